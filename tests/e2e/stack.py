"""The production stack on loopback for ``make e2e``: a private CA and certificate, a throwaway PostgreSQL
cluster, Redis, two daphne workers and nginx serving two HTTPS origins (deploy/nginx/chat.conf.template).

Every process is started here and stopped here by PID, in reverse order; a supervisor thread restarts a
worker that dies (as systemd's ``Restart=always`` does in deploy/systemd/), so a test may kill one.
The stack's state (origins, CA, workers with their current PIDs and access logs) is written to
``<work>/stack.json`` for the tests in this directory.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from attachments.uploads import MULTIPART_OVERHEAD
from scripts import postgres, s3server
from scripts.processes import free_port, port_open

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
STARTUP_TIMEOUT = 60.0  # seconds for any one component to come up on a loaded 2-core machine
UPLOAD_LIMIT = 20 * 1024 * 1024  # ATTACHMENTS_MAX_FILE_BYTES of the stack; nginx's upload limit follows it


def say(text: str) -> None:
    """Progress for the person running ``make e2e``."""
    print(f"[e2e {time.strftime('%H:%M:%S')}] {text}", flush=True)


def wait_until(predicate: Callable[[], bool], *, what: str, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Worker:
    name: str
    port: int
    access_log: Path
    log: Path
    process: subprocess.Popen | None = None
    restarts: int = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def as_json(self) -> dict:
        return {"name": self.name, "port": self.port, "pid": self.pid, "access_log": str(self.access_log),
                "log": str(self.log), "restarts": self.restarts}  # fmt: skip


@dataclass
class Stack:
    work: Path
    frontend_port: int = 8443
    api_port: int = 9443
    worker_count: int = 2
    restart_delay: float = 8.0
    frontend_host: str = "localhost"
    api_host: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)
    _started: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _supervisor: threading.Thread | None = None

    # --- public -------------------------------------------------------------------------------------

    @property
    def frontend(self) -> str:
        return f"https://{self.frontend_host}:{self.frontend_port}"

    @property
    def api(self) -> str:
        return f"https://{self.api_host}:{self.api_port}"

    @property
    def ca(self) -> Path:
        return self.work / "tls" / "ca.pem"

    @property
    def state_file(self) -> Path:
        return self.work / "stack.json"

    def up(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.work.chmod(0o755)  # the postgres user and nginx's workers need to enter it
        self._certificates()
        self._postgres()
        self._redis()
        self._s3()
        self._configure_django()
        for index in range(self.worker_count):
            self._start_worker(self._new_worker(index + 1))
        self._nginx()
        self._write_state()
        self._supervisor = threading.Thread(target=self._supervise, name="e2e-supervisor", daemon=True)
        self._supervisor.start()

    def down(self) -> None:
        """Stop everything started, newest first, each by its PID."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        while self._started:
            name, stop = self._started.pop()
            try:
                stop()
                say(f"stopped {name}")
            except Exception as exc:  # keep tearing down the rest
                say(f"could not stop {name}: {exc}")

    def manage(self, *args: str, check: bool = True, capture: bool = False, input_text: str | None = None):
        """``manage.py <args>`` with the stack's environment."""
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=self.env, check=check, text=True,
            capture_output=capture, input=input_text,
        )  # fmt: skip

    # --- TLS ------------------------------------------------------------------------------------------

    def _certificates(self) -> None:
        tls = self.work / "tls"
        names = dict.fromkeys([self.frontend_host, self.api_host])
        subprocess.run([str(DEPLOY / "certs.sh"), str(tls), *names], check=True, stdout=subprocess.DEVNULL)
        say(f"TLS: private CA {self.ca} and a certificate for {', '.join(names)} (openssl, deploy/certs.sh)")

    # --- PostgreSQL -----------------------------------------------------------------------------------

    def _postgres(self) -> None:
        """scripts/postgres.py's throwaway cluster (its folder inside the stack's, so its log is kept)."""
        cluster = postgres.start(self.work / "pg", settings={"fsync": "off"})
        self._started.append(("PostgreSQL", cluster.stop))
        self.database_url = cluster.url
        say(f"PostgreSQL {cluster.version}: throwaway cluster {cluster.data} on 127.0.0.1:{cluster.port} "
            f"(pid {cluster.pid})")  # fmt: skip

    # --- Redis ----------------------------------------------------------------------------------------

    def _redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install redis-server")
        port = free_port()
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--logfile", str(self.work / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._started.append(("Redis", lambda: self._stop_process(process)))
        wait_until(lambda: port_open(port), what="redis-server")
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        say(f"Redis on 127.0.0.1:{port} (pid {process.pid})")

    # --- S3 -------------------------------------------------------------------------------------------

    def _s3(self) -> None:
        """moto's S3 API server (scripts/s3server.py) with a bucket; nginx puts TLS in front of it on its own
        port (``_nginx``), because the HTTPS pages load attachments from the presigned URLs directly."""
        server = s3server.start(self.work / "s3.log")
        self._started.append(("S3 API server", server.stop))
        self.s3_backend_port = server.port
        self.s3_port = free_port()
        s3server.bucket_create(server.endpoint, "chat-attachments")
        self.s3_env = {
            **server.env("chat-attachments"),
            "ATTACHMENTS_S3_ENDPOINT_URL": f"https://{self.api_host}:{self.s3_port}",
            "ATTACHMENTS_S3_CA_BUNDLE": str(self.ca),
        }
        say(f"S3 API server (moto) on 127.0.0.1:{server.port} (pid {server.process.pid}), bucket chat-attachments, "
            f"through nginx at https://{self.api_host}:{self.s3_port}")  # fmt: skip

    # --- Django ---------------------------------------------------------------------------------------

    def _configure_django(self) -> None:
        """The environment of deploy/env.example with loopback values; then collectstatic, check --deploy, migrate."""
        static_root = self.work / "static"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_"))},
            "DJANGO_SETTINGS_MODULE": "chatproject.settings",
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": ",".join(dict.fromkeys([self.frontend_host, self.api_host])),
            "DATABASE_URL": self.database_url,
            "DB_POOL": "1",  # deploy/env.example's pooled connections
            "DB_POOL_MIN_SIZE": "2",
            "DB_POOL_MAX_SIZE": "10",
            "DB_POOL_TIMEOUT": "10",
            "CHAT_WRITER_PROCESS": "1",  # deploy/env.example's writer processes
            "REDIS_URL": self.redis_url,
            "SITE_ORIGIN": self.frontend,
            "API_ORIGIN": self.api,
            "FRONTEND_ORIGINS": self.frontend,
            "BEHIND_TLS_PROXY": "1",
            "TRUSTED_PROXY_COUNT": "1",  # nginx in front, as deploy/env.example
            "SECURE_SSL_REDIRECT": "1",
            "SECURE_HSTS_SECONDS": "31536000",
            "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
            "SECURE_HSTS_PRELOAD": "1",
            "STATIC_ROOT": str(static_root),
            # The browser tests log in many times a minute from one address; production keeps 20/min.
            "AUTH_THROTTLE_RATE": "10000/min",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **self.s3_env,
            "ATTACHMENTS_MAX_FILE_BYTES": str(UPLOAD_LIMIT),
        }
        # collectstatic first, as deploy/systemd/chat-migrate.service: check --deploy wants its manifest.
        self.manage("collectstatic", "--noinput", "-v0")
        result = self.manage("check", "--deploy", "--fail-level", "WARNING", capture=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py check --deploy is not clean:\n{result.stdout}{result.stderr}")
        say(f"manage.py check --deploy: {result.stdout.strip().splitlines()[-1]}")
        self.manage("migrate", "--noinput", "-v0")
        say(f"migrated the PostgreSQL database; collectstatic (hashed names) → {static_root}")

    def _new_worker(self, number: int) -> Worker:
        port = free_port()
        worker = Worker(
            f"worker-{number}", port, self.work / f"worker-{number}.access.log", self.work / f"worker-{number}.log"
        )
        self.workers.append(worker)
        self._started.append((worker.name, lambda: self._stop_worker(worker)))
        return worker

    def _start_worker(self, worker: Worker) -> None:
        # The argv of deploy/systemd/chat-daphne@.service: loopback only, proxy headers trusted from nginx.
        argv = [sys.executable, "-m", "chatproject.daphne_server", "-b", "127.0.0.1", "-p", str(worker.port),
                "--proxy-headers", "--access-log", str(worker.access_log), "chatproject.asgi:application"]  # fmt: skip
        with open(worker.log, "ab") as log:
            worker.process = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        process = worker.process

        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{worker.name} exited with {process.returncode}; see {worker.log}")
            try:  # as nginx asks: X-Forwarded-Proto https, or SECURE_SSL_REDIRECT answers 301
                url = f"http://127.0.0.1:{worker.port}/readyz/"
                return httpx.get(url, headers={"X-Forwarded-Proto": "https"}, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, what=f"{worker.name} on 127.0.0.1:{worker.port}")
        say(f"{worker.name}: daphne on 127.0.0.1:{worker.port} (pid {process.pid})")

    def _stop_worker(self, worker: Worker) -> None:
        if worker.process is not None:
            self._stop_process(worker.process)

    def _supervise(self) -> None:
        """Restart a worker that exited, like systemd's Restart=always with RestartSec (tests kill them on
        purpose; the delay lets their clients show that they move to the other worker meanwhile)."""
        died_at: dict[str, float] = {}
        while not self._stopping.wait(0.2):
            for worker in self.workers:
                process = worker.process
                if process is None or process.poll() is None or self._stopping.is_set():
                    continue
                if worker.name not in died_at:
                    died_at[worker.name] = time.monotonic()
                    say(f"{worker.name} (pid {process.pid}) exited with {process.returncode}; "
                        f"restarting it in {self.restart_delay:.0f}s")  # fmt: skip
                if time.monotonic() - died_at[worker.name] < self.restart_delay:
                    continue
                del died_at[worker.name]
                with self._lock:
                    worker.restarts += 1
                    try:
                        self._start_worker(worker)
                    except RuntimeError as exc:
                        say(f"{worker.name} did not come back: {exc}")
                    self._write_state()

    # --- nginx ----------------------------------------------------------------------------------------

    def _nginx(self) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise RuntimeError("nginx is not installed: apt-get install nginx")
        root = self.work / "nginx"
        for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        values = {
            "FRONTEND_ORIGIN": self.frontend,
            "FRONTEND_NAME": self.frontend_host,
            "FRONTEND_LISTEN": f"127.0.0.1:{self.frontend_port}",
            "API_NAME": self.api_host,
            "API_LISTEN": f"127.0.0.1:{self.api_port}",
            "FRONTEND_CERT": str(self.work / "tls" / "server.pem"),
            "FRONTEND_KEY": str(self.work / "tls" / "server.key"),
            "API_CERT": str(self.work / "tls" / "server.pem"),
            "API_KEY": str(self.work / "tls" / "server.key"),
            "STATIC_ROOT": self.env["STATIC_ROOT"],
            "ACCESS_LOG": str(root / "access.log"),
            "UPLOAD_MAX_BODY_SIZE": str(UPLOAD_LIMIT + MULTIPART_OVERHEAD),
            "UPSTREAM_SERVERS": "\n    ".join(f"server 127.0.0.1:{w.port} max_fails=0;" for w in self.workers),
        }
        site = render_template((DEPLOY / "nginx" / "chat.conf.template").read_text(), values)
        (root / "chat.conf").write_text(site)
        tmp = root / "tmp"
        user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
        if os.geteuid() == 0:
            for path in tmp.rglob("*"):
                shutil.chown(path, "nobody", "nogroup")
        (root / "nginx.conf").write_text(
            f"""# make e2e's nginx: a private prefix, loopback listeners, the site file rendered from deploy/nginx.
{user}worker_processes 2;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;  # the site's servers log with its own format (deploy/nginx: no query strings)
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    sendfile on;
    server_tokens off;
    include {root}/chat.conf;
    # make e2e only: TLS in front of the S3 API server, as a real S3 endpoint has (deploy/nginx knows
    # nothing of S3; production's storage is a service of its own).
    server {{
        listen 127.0.0.1:{self.s3_port} ssl;
        server_name {self.api_host};
        ssl_certificate {self.work / "tls" / "server.pem"};
        ssl_certificate_key {self.work / "tls" / "server.key"};
        client_max_body_size 0;
        location / {{
            proxy_pass http://127.0.0.1:{self.s3_backend_port};
            proxy_set_header Host $http_host;
            proxy_request_buffering off;
        }}
    }}
}}
"""
        )
        base = [binary, "-p", str(root), "-e", str(root / "error.log"), "-c", str(root / "nginx.conf")]
        test = subprocess.run([*base, "-t"], capture_output=True, text=True)
        if test.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{test.stderr}")
        process = subprocess.Popen([*base, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self._started.append(("nginx", lambda: self._stop_process(process, signal.SIGQUIT)))
        wait_until(
            lambda: port_open(self.frontend_port) and port_open(self.api_port) and port_open(self.s3_port),
            what="nginx to listen",
        )
        say(f"nginx (pid {process.pid}): frontend {self.frontend}, API {self.api} → {len(self.workers)} workers")

    # --- state and stopping ---------------------------------------------------------------------------

    def _write_state(self) -> None:
        state = {"frontend": self.frontend, "api": self.api, "ca": str(self.ca), "work": str(self.work),
                 "workers": [w.as_json() for w in self.workers]}  # fmt: skip
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    @staticmethod
    def _stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        if process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def render_template(text: str, values: dict[str, str]) -> str:
    """envsubst with a variable list: replace ``${NAME}`` for the given names only (nginx's $vars stay)."""
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    return text
