"""``pip install`` of the checkout into a fresh virtualenv gives a working engine that examples/echo serves.

The virtualenv is new (under a temporary directory); only the engine distribution is installed into it,
from the checkout, by pip (``--no-deps --no-build-isolation --no-index``: no network). Its third-party
dependencies (Django, Channels, daphne, redis, prometheus-client) are made visible from the project's own
virtualenv by a ``.pth`` file. The example project is copied outside the checkout and served by daphne
from there, so nothing can be imported from the checkout; @stomp/stompjs then talks to it over the raw
WebSocket and over SockJS (sockjs-client).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.processes import free_port, stop, wait_port
from tests.conftest import OUTPUT, REPO, node_script

pytestmark = pytest.mark.live
TOKEN = "echo-token"  # examples/echo/echo_project/settings.py's ECHO_TOKEN


@dataclass
class Installed:
    python: Path
    site_packages: Path
    example: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python), *args], cwd=self.example, env=self.env, capture_output=True, text=True, timeout=timeout
        )


def clean_env() -> dict[str, str]:
    """The test's environment without anything that would point Python or Django at the checkout."""
    dropped = ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "REDIS_URL", "DATABASE_URL", "VIRTUAL_ENV", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("STOMP_")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("installed-engine")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()
    )  # fmt: skip
    # Third-party packages (and pip, setuptools, wheel) come from the project's virtualenv, appended after
    # the fresh one's own site-packages; the checkout itself is not on that path.
    project_site = Path(sysconfig.get_paths()["purelib"]).resolve()
    # The project's virtualenv may live inside the checkout (.venv), but the checkout's own packages are
    # not installed in it: only the pip install below can provide stompengine to the fresh virtualenv.
    assert not (project_site / "stompengine").exists() and not list(project_site.glob("*stompengine*.pth"))
    (site_packages / "project_dependencies.pth").write_text(f"{project_site}\n")
    env = clean_env()
    # pip builds in the checkout (setuptools' build/ and egg-info): remove what this install leaves there.
    leftovers = [path for path in (REPO / "build", REPO / "django_stompengine.egg-info") if not path.exists()]
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir",
         "--disable-pip-version-check", str(REPO)],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    assert result.returncode == 0, result.stdout + result.stderr
    example = root / "echo"
    shutil.copytree(REPO / "examples" / "echo", example, ignore=shutil.ignore_patterns("__pycache__"))
    return Installed(python, site_packages, example, env)


def test_the_engine_is_imported_from_the_fresh_virtualenv_not_the_checkout(installed):
    probe = (
        "import json, sys, stompengine, sockjs, stompengine.stomp.session, django; "
        "print(json.dumps({'stompengine': stompengine.__file__, 'sockjs': sockjs.__file__, "
        "'django': django.__file__, 'path': sys.path}))"
    )
    result = installed.run("-c", probe)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert Path(found["stompengine"]).parent == installed.site_packages / "stompengine"
    assert Path(found["sockjs"]).parent == installed.site_packages / "sockjs"
    # No other entry of the path could provide the engine (the checkout's root is not on it).
    others = [Path(entry) for entry in found["path"] if entry and Path(entry) != installed.site_packages]
    assert not [entry for entry in others if (entry / "stompengine").exists() or (entry / "sockjs").exists()]
    assert not Path(found["django"]).resolve().is_relative_to(installed.site_packages)  # from the .pth


def test_the_installed_distribution_holds_the_engine_and_sockjs_only(installed):
    record = next(installed.site_packages.glob("django_stompengine-*.dist-info")) / "RECORD"
    top_level = {line.split("/")[0] for line in record.read_text().splitlines() if line}
    assert {"stompengine", "sockjs"} <= top_level
    assert not top_level & {"chat", "accounts", "notifications", "operations", "chatproject", "doctor", "tests"}
    assert (installed.site_packages / "stompengine" / "py.typed").exists()


def test_the_example_passes_djangos_checks_with_its_handlers_loaded(installed):
    probe = (
        "import django, stompengine; django.setup(); "
        "from stompengine.realtime.registry import destinations; "
        "print(stompengine.__file__, destinations.resolve_app('/app/echo') is not None)"
    )
    env = {**installed.env, "DJANGO_SETTINGS_MODULE": "echo_project.settings"}
    result = subprocess.run(
        [str(installed.python), "-c", probe], cwd=installed.example, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    path, handler = result.stdout.split()
    assert Path(path).is_relative_to(installed.site_packages) and handler == "True"
    check = installed.run("manage.py", "check")
    assert check.returncode == 0, check.stderr


@pytest.fixture(scope="module")
def echo_server(installed) -> Iterator[int]:
    """daphne from the fresh virtualenv serving the copied example; stopped by PID."""
    OUTPUT.mkdir(exist_ok=True)
    port = free_port()
    log_path = OUTPUT / f"echo-example-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(installed.python), "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "echo_project.asgi:application"],
            cwd=installed.example, env=installed.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        try:
            wait_port(port, process, what="daphne (echo example)", timeout=60)
        except RuntimeError as exc:
            pytest.fail(f"{exc}\n{log_path.read_text(errors='replace')}")
        yield port
    finally:
        stop(process)


@pytest.mark.parametrize("transport", ["websocket", "xhr-streaming", "xhr-polling"])
def test_stompjs_exchanges_messages_over_the_raw_websocket_and_sockjs(echo_server, transport):
    completed = node_script(
        "echo_example.mjs",
        f"ws://127.0.0.1:{echo_server}/ws",
        f"http://127.0.0.1:{echo_server}/stomp",
        transport,
        TOKEN,
        timeout=40,
    )
    assert completed.returncode == 0, completed.stderr
    out = json.loads(completed.stdout.strip().splitlines()[-1])
    assert out["errors"] == [] and "timedOut" not in out, out
    assert out["connected"] == {
        "websocket": {"server": "echo-example/1.0", "user": "echo"},
        "sockjs": {"server": "echo-example/1.0", "user": "echo"},
    }
    assert out["echoes"] == {"websocket": "echo over websocket", "sockjs": "echo over sockjs"}
    assert out["chat"] == {"sockjs": "hello from websocket", "websocket": ["hello from websocket", "hello from sockjs"]}
    assert out["receipts"] == ["echo-websocket", "echo-sockjs", "chat-websocket", "chat-sockjs"]


def test_a_wrong_token_is_refused(echo_server):
    completed = node_script(
        "echo_example.mjs",
        f"ws://127.0.0.1:{echo_server}/ws",
        f"http://127.0.0.1:{echo_server}/stomp",
        "xhr-streaming",
        "not-the-token",
        timeout=40,
    )
    out = json.loads(completed.stdout.strip().splitlines()[-1])
    assert any("token-invalid" in error or "unknown token" in error for error in out["errors"]), out
    assert out["connected"] == {}
