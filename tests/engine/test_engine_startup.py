"""At start-up (django.setup(), as manage.py and the ASGI module do) the engine checks its settings and
imports every handler module, so a broken one stops the process before any client connects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.conftest import REPO

PROBE = (
    "import json, sys, django; django.setup(); "
    "from stompengine.realtime.registry import destinations; "
    "loaded = sorted(m for m in sys.modules if m.endswith('stomp_destinations') or m == 'extra_handlers'); "
    "print(json.dumps({'loaded': loaded, "
    "'rooms': destinations.resolve_app('/app/rooms.lobby') is not None, "
    "'extra': destinations.resolve_app('/app/extra.ping') is not None}))"
)


def setup_django(tmp_path, *, extra_settings: str = "", modules: dict[str, str] | None = None, **env: str):
    """Run django.setup() in a fresh interpreter with the project's settings plus ``extra_settings``."""
    (tmp_path / "probe_settings.py").write_text("from chatproject.settings import *  # noqa: F403\n" + extra_settings)
    for name, source in (modules or {}).items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    environ = {key: value for key, value in os.environ.items() if not key.startswith("STOMP_")}
    environ.update(DJANGO_SETTINGS_MODULE="probe_settings", PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}", **env)
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=environ, capture_output=True, text=True, timeout=120
    )


def test_installed_apps_handlers_and_listed_modules_are_imported_at_setup(tmp_path):
    extra = """
        from stompengine import SendContext, app_destination

        @app_destination("/app/extra.ping")
        async def ping(ctx: SendContext) -> None:
            return None
    """
    result = setup_django(
        tmp_path, extra_settings='STOMP_HANDLER_MODULES = ["extra_handlers"]\n', modules={"extra_handlers": extra}
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert "chat.stomp_destinations" in found["loaded"] and "extra_handlers" in found["loaded"]
    assert found["rooms"] and found["extra"]


def test_a_broken_handler_module_stops_the_process_at_setup(tmp_path):
    broken = """
        raise RuntimeError("this handler module is broken on purpose")
    """
    result = setup_django(
        tmp_path, extra_settings='STOMP_HANDLER_MODULES = ["broken_handlers"]\n', modules={"broken_handlers": broken}
    )
    assert result.returncode != 0
    assert "RuntimeError: this handler module is broken on purpose" in result.stderr
    assert "stompengine/apps.py" in result.stderr  # raised from the AppConfig's ready(), not on a CONNECT


def test_a_missing_handler_module_stops_the_process_at_setup(tmp_path):
    result = setup_django(tmp_path, extra_settings='STOMP_HANDLER_MODULES = ["no_such_handlers"]\n')
    assert result.returncode != 0
    assert "ModuleNotFoundError: No module named 'no_such_handlers'" in result.stderr


def test_an_engine_setting_below_its_minimum_stops_the_process_at_setup(tmp_path):
    result = setup_django(tmp_path, STOMP_MAX_HEADERS="2")
    assert result.returncode != 0
    assert "ImproperlyConfigured: STOMP_MAX_HEADERS=2 is below its minimum of 8" in result.stderr
