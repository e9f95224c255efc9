"""A throwaway PostgreSQL cluster for tests, ``make e2e`` and the benchmark: Debian's server binaries, data
and unix-socket directories in a temporary folder, a free TCP port on 127.0.0.1, one database owned by a
password role, so the ``DATABASE_URL`` looks like production's. Stopped by PID, folder removed.

    with running() as cluster:
        os.environ["DATABASE_URL"] = cluster.url

``python -m scripts.postgres`` starts one, prints its URL and keeps it until Ctrl-C.
initdb and pg_ctl refuse to run as root: as root they run as the ``postgres`` user (runuser).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from scripts.processes import LOOPBACK, free_port

logger = logging.getLogger(__name__)

PG_ROOTS = Path("/usr/lib/postgresql")  # Debian: /usr/lib/postgresql/<major>/bin, not on PATH
START_TIMEOUT = 60  # seconds; a loaded 2-core machine
STOP_TIMEOUT = 30
START_ATTEMPTS = 3  # another process may take the free port between free_port() and the postmaster's bind


class PostgresNotInstalled(RuntimeError):
    """Debian's PostgreSQL server binaries are missing."""


def postgres_bin(roots: Path = PG_ROOTS) -> Path:
    """The newest ``<roots>/<major>/bin`` that has initdb (Debian's layout)."""
    versions = [p for p in roots.glob("*/bin") if (p / "initdb").exists() and p.parent.name.isdigit()]
    if not versions:
        raise PostgresNotInstalled(
            f"PostgreSQL server binaries (initdb, pg_ctl) not found under {roots}/<version>/bin: "
            "apt-get install postgresql"
        )
    return max(versions, key=lambda p: int(p.parent.name))


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as gone (and is reaped when it is our child: runuser and
    pg_ctl exit right away, so the postmaster may be re-parented to us when we are a subreaper or PID 1)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def children(pid: int) -> set[int]:
    """PIDs whose parent is ``pid`` (the postmaster's backends and auxiliary processes)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(stat.parent.name))
    return found


@dataclass
class Cluster:
    """A running cluster: ``url`` for the application (TCP, password), ``admin_argv`` for psql as superuser."""

    root: Path
    bin: Path
    port: int
    pid: int
    database: str
    user: str
    password: str
    owns_root: bool = True
    stopped: bool = field(default=False)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sockets(self) -> Path:
        return self.root / "sockets"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    @property
    def version(self) -> str:
        return self.bin.parent.name

    @property
    def url(self) -> str:
        return f"postgres://{self.user}:{self.password}@{LOOPBACK}:{self.port}/{self.database}"

    @property
    def conninfo(self) -> str:
        """The same as ``url`` in libpq's key=value form (psycopg.connect)."""
        return f"host={LOOPBACK} port={self.port} dbname={self.database} user={self.user} password={self.password}"

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run SQL as the superuser over the private unix socket; returns psql's unaligned output."""
        argv = [str(self.bin / "psql"), "-X", "-q", "-At", "-h", str(self.sockets), "-p", str(self.port),
                "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-c", sql]  # fmt: skip
        return _run(as_postgres(argv, self.bin), what="psql").stdout

    def stop(self) -> None:
        """pg_ctl stop -m fast; if the postmaster is still there, SIGQUIT then SIGKILL by its PID; then remove
        the folder (when this cluster created it). Idempotent."""
        if self.stopped:
            return
        self.stopped = True
        if pid_alive(self.pid):
            stop = as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t",
                                str(STOP_TIMEOUT), "stop"], self.bin)  # fmt: skip
            subprocess.run(stop, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=STOP_TIMEOUT + 10)
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            if not pid_alive(self.pid):
                break
            logger.warning("PostgreSQL (pid %s) still running after pg_ctl stop: sending %s", self.pid, sig.name)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            _wait(lambda: not pid_alive(self.pid), timeout=10)
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)


def as_postgres(argv: list[str], pg_bin: Path) -> list[str]:
    """initdb, pg_ctl and psql as the ``postgres`` user when we are root (they refuse root)."""
    path = f"PATH={pg_bin}:/usr/bin:/bin"
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", "env", path, *argv]
    return ["env", path, *argv]


def start(
    root: Path | None = None,
    *,
    database: str = "chat",
    user: str = "chat",
    settings: dict[str, str] | None = None,
    createdb: bool = False,
    roots: Path = PG_ROOTS,
) -> Cluster:
    """initdb a new cluster in ``root`` (a new temporary folder when None, removed by ``stop``), start it on a
    free loopback port and create ``database`` owned by the password role ``user``.

    ``settings`` are extra ``postgres -c name=value`` options (e.g. ``{"fsync": "off"}`` for tests);
    ``createdb`` lets the role create databases (pytest-django's test database).
    """
    pg_bin = postgres_bin(roots)
    owns_root = root is None
    root = Path(tempfile.mkdtemp(prefix="chat-pg-")) if root is None else root.resolve()  # the server's cwd differs
    cluster = None
    try:
        cluster = _start(root, pg_bin, owns_root=owns_root, database=database, user=user,
                         settings=settings or {}, createdb=createdb)  # fmt: skip
        return cluster
    finally:
        if cluster is None and owns_root:
            shutil.rmtree(root, ignore_errors=True)


def _start(
    root: Path, pg_bin: Path, *, owns_root: bool, database: str, user: str, settings: dict[str, str], createdb: bool
) -> Cluster:
    data, sockets, log = root / "data", root / "sockets", root / "postgres.log"
    root.mkdir(parents=True, exist_ok=True)
    sockets.mkdir()
    log.touch()
    if os.geteuid() == 0:
        for path in (root, sockets, log):
            shutil.chown(path, "postgres", "postgres")
    root.chmod(0o700)
    # Local connections (the private unix socket above) are trusted for setup; the application connects over
    # TCP with a password, as in production.
    _run(as_postgres([str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8", "--no-locale",
                      "--auth-local=trust", "--auth-host=scram-sha-256"], pg_bin), what="initdb")  # fmt: skip
    options = " ".join(f"-c {name}={value}" for name, value in settings.items())
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()
        argv = [str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", str(START_TIMEOUT), "-o",
                f"-c listen_addresses={LOOPBACK} -p {port} -k {sockets} {options}", "start"]  # fmt: skip
        done = subprocess.run(as_postgres(argv, pg_bin), capture_output=True, text=True, timeout=START_TIMEOUT + 30)
        if done.returncode == 0:
            break
        if attempt == START_ATTEMPTS:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed ({done.returncode}): {done.stderr.strip()}\n{tail}")
    pid = int((data / "postmaster.pid").read_text().splitlines()[0])
    cluster = Cluster(root, pg_bin, port, pid, database, user, secrets.token_urlsafe(24), owns_root=owns_root)
    try:
        role = f"CREATE ROLE {user} LOGIN PASSWORD '{cluster.password}'" + (" CREATEDB" if createdb else "")
        cluster.psql(role)
        cluster.psql(f"CREATE DATABASE {database} OWNER {user}")
    except BaseException:
        cluster.stop()
        raise
    logger.info("PostgreSQL %s: throwaway cluster %s on %s:%s (pid %s)", cluster.version, data, LOOPBACK, port, pid)
    return cluster


@contextlib.contextmanager
def running(root: Path | None = None, **options) -> Iterator[Cluster]:
    """``start(...)`` for the duration of a ``with`` block; stopped (by PID) and removed afterwards."""
    cluster = start(root, **options)
    try:
        yield cluster
    finally:
        cluster.stop()


def _run(argv: list[str], *, what: str) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done


def _wait(predicate, *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def main() -> None:
    """Start a cluster, print its DATABASE_URL, keep it until Ctrl-C (or SIGTERM), then stop it."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fsync", choices=["on", "off"], default="on")
    parser.add_argument("--createdb", action="store_true", help="let the role create databases (test databases)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops it as Ctrl-C does
    with running(settings={"fsync": args.fsync}, createdb=args.createdb) as cluster:
        print(f"DATABASE_URL={cluster.url}", flush=True)  # noqa: T201 - the command's output
        print(f"# PostgreSQL {cluster.version}, pid {cluster.pid}, {cluster.root}; Ctrl-C stops it", flush=True)  # noqa: T201
        with contextlib.suppress(KeyboardInterrupt):
            while pid_alive(cluster.pid):
                time.sleep(1)


if __name__ == "__main__":
    main()
