"""``make e2e``: bring the production stack up on loopback, prove the whole path, tear it down.

    python -m tests.e2e.run [--frontend-port 8443] [--api-port 9443] [--keep]

Steps: the stack (tests/e2e/stack.py: CA, PostgreSQL, Redis, two daphne workers, nginx), the browser
tests through nginx (tests/e2e/test_e2e_browser.py, which includes the frontend's own), ``manage.py doctor``
against the two HTTPS origins (every check must PASS), a worker killed mid-chat
(tests/e2e/test_e2e_failover.py), then teardown by PID. Logs and the state file are copied to
test-output/e2e/ before the temporary directory is removed. The exit status is 0 only if every step passed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.processes import port_open
from tests.e2e.stack import REPO, Stack, say

OUTPUT = REPO / "test-output" / "e2e"
STEP_TIMEOUT = 900  # seconds: a bound on every step, far above a normal run
DOCTOR_USER, DOCTOR_PASSWORD = "carol", "chat-demo-pass"  # seed_demo's user; the browser tests use alice and bob


def trust_ca_for_chromium(stack: Stack, home: Path) -> bool:
    """An NSS database in a private $HOME that trusts the stack's CA, as Chromium on Linux reads it."""
    certutil = shutil.which("certutil")
    if certutil is None:
        return False
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run([certutil, "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True)
    subprocess.run([certutil, "-A", "-d", f"sql:{nssdb}", "-n", "chat-e2e-ca", "-t", "C,,", "-i", str(stack.ca)],
                   check=True)  # fmt: skip
    return True


def pytest_step(stack: Stack, env: dict[str, str], test_file: str) -> bool:
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s", "-v", "--timeout", "300",
            f"tests/e2e/{test_file}"]  # fmt: skip
    return subprocess.run(argv, cwd=REPO, env=env, timeout=STEP_TIMEOUT).returncode == 0


def hashed_static_name(stack: Stack, name: str) -> str:
    """The file name collectstatic gave ``name`` (ManifestStaticFilesStorage), e.g. global.fb03060d61bd.js."""
    manifest = json.loads((Path(stack.env["STATIC_ROOT"]) / "staticfiles.json").read_text())["paths"]
    return manifest[name].rsplit("/", 1)[-1]


def doctor_step(stack: Stack, env: dict[str, str]) -> bool:
    stack.manage("seed_demo")
    # The pages load global.<hash>.js; doctor matches the shared script by file name (--global-script).
    global_script = hashed_static_name(stack, "js/global.js")
    result = subprocess.run(
        [sys.executable, "manage.py", "doctor", "--frontend", stack.frontend, "--api", stack.api,
         "--username", DOCTOR_USER, "--password", "-", "--global-script", global_script],
        cwd=REPO, env=env, input=DOCTOR_PASSWORD, capture_output=True, text=True, timeout=STEP_TIMEOUT,
    )  # fmt: skip
    print(result.stdout, end="", flush=True)
    (OUTPUT / "doctor.txt").write_text(result.stdout)
    lines = [line for line in result.stdout.splitlines() if line[:4] in ("PASS", "WARN", "FAIL")]
    not_passing = [line for line in lines if not line.startswith("PASS")]
    if result.returncode != 0 or not lines or not_passing:
        say(f"doctor: exit {result.returncode}; not PASS: {not_passing or result.stderr[-2000:]}")
        return False
    return True


def metrics_step(stack: Stack, *, chatted: bool) -> bool:
    """Each worker's /metrics on its loopback port (as Prometheus scrapes it) counts the chat the steps before
    had (``chatted``: the browser step sent messages, so deliveries too); through nginx /readyz/ answers ready
    and /metrics is not served."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    forwarded = {"X-Forwarded-Proto": "https"}  # as nginx sends: SECURE_SSL_REDIRECT answers 301 otherwise
    totals: dict[str, float] = {}
    for worker in stack.workers:
        response = httpx.get(f"http://127.0.0.1:{worker.port}/metrics", headers=forwarded, timeout=10)
        if response.status_code != 200:
            say(f"metrics: {worker.name} answered {response.status_code}")
            return False
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    with httpx.Client(verify=str(stack.ca), timeout=10) as client:
        ready = client.get(f"{stack.api}/readyz/")
        hidden = client.get(f"{stack.api}/metrics")
    delivered = totals.get("chat_stomp_deliveries_total", 0) > 0 or not chatted
    ok = (totals.get("chat_stomp_connects_total", 0) > 0 and delivered
          and ready.status_code == 200 and ready.json()["ready"] and hidden.status_code == 404)  # fmt: skip
    say(f"metrics: CONNECTs {totals.get('chat_stomp_connects_total')}, deliveries "
        f"{totals.get('chat_stomp_deliveries_total')}; via nginx /readyz/ {ready.status_code}, /metrics "
        f"{hidden.status_code}")  # fmt: skip
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frontend-port", type=int, default=int(os.environ.get("E2E_FRONTEND_PORT", 8443)))
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("E2E_API_PORT", 9443)))
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (certificates, logs)")
    parser.add_argument(
        "--steps", default="browser,doctor,metrics,failover", help="comma-separated subset, in this order"
    )
    args = parser.parse_args()
    for port in (args.frontend_port, args.api_port):
        if port_open(port):
            say(f"127.0.0.1:{port} is in use: pass E2E_FRONTEND_PORT=… E2E_API_PORT=… (make e2e) to pick others")
            return 2

    OUTPUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="chat-e2e-"))
    stack = Stack(work=work, frontend_port=args.frontend_port, api_port=args.api_port)
    results: list[tuple[str, bool]] = []
    started = time.monotonic()
    try:
        say(f"bringing the stack up in {work}")
        stack.up()
        results.append(("stack up: TLS, PostgreSQL, Redis, 2 daphne workers, nginx; check --deploy clean", True))

        env = {**stack.env, "E2E_STACK": str(stack.state_file), "SSL_CERT_FILE": str(stack.ca)}
        home = work / "home"
        if trust_ca_for_chromium(stack, home):
            env["HOME"] = str(home)
            say("Chromium trusts the stack's CA (NSS database in a private $HOME)")
        else:
            env["E2E_IGNORE_CERT_ERRORS"] = "1"
            say("certutil (Debian package libnss3-tools) is missing: Chromium ignores certificate errors instead")

        steps = args.steps.split(",")
        if "browser" in steps:
            say(f"step 1/4: browser tests against {stack.frontend} (pages) and {stack.api} (API) through nginx")
            results.append(("browser tests over HTTPS through nginx", pytest_step(stack, env, "test_e2e_browser.py")))
        if "doctor" in steps:
            say(f"step 2/4: manage.py doctor --frontend {stack.frontend} --api {stack.api}")
            results.append(("manage.py doctor: every check PASS", doctor_step(stack, env)))
        if "metrics" in steps:
            say("step 3/4: /metrics of each worker after the chat; /readyz/ and no /metrics through nginx")
            results.append(
                (
                    "metrics scraped from both workers; /readyz/ ready through nginx",
                    metrics_step(stack, chatted="browser" in steps),
                )
            )
        if "failover" in steps:
            say("step 4/4: a worker killed mid-chat")
            results.append(
                ("worker killed mid-chat: reconnect, nothing lost", pytest_step(stack, env, "test_e2e_failover.py"))
            )
    except Exception as exc:
        say(f"the stack failed: {exc}")
        results.append(("stack", False))
    finally:
        say("tearing down")
        stack.down()
        for log in [
            *work.glob("*.log"),
            *work.glob("pg/*.log"),
            *work.glob("nginx/*.log"),
            *work.glob("nginx/*.conf"),
            stack.state_file,
        ]:
            if log.exists():
                shutil.copy(log, OUTPUT / (log.name if log.parent == work else f"{log.parent.name}-{log.name}"))
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    screenshots = sorted((REPO / "test-output" / "screenshots").glob("e2e-room-https-*.png"))
    print("\n=== make e2e summary ===")
    for name, ok in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if screenshots:
        print(f"screenshot of the HTTPS chat page: {screenshots[-1].relative_to(REPO)}")
    print(f"logs: {OUTPUT.relative_to(REPO)}/   ({time.monotonic() - started:.0f}s)")
    return 0 if results and all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
