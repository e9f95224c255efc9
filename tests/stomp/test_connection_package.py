"""The connection package's shape: no import of the project's apps, no module past ~400 lines, no private
asyncio protocol and no hand-driven coroutines (issue 18)."""

from __future__ import annotations

from pathlib import Path

import stompengine.connection
from tests.stomp.test_stomp_purity import imported_roots

PACKAGE = Path(stompengine.connection.__file__).parent
ENGINE_FILES = [*PACKAGE.glob("*.py"), PACKAGE.parent / "auth.py"]
PROJECT_APPS = {"accounts", "chat", "notifications", "doctor", "chatproject"}


def test_the_connection_imports_none_of_the_projects_apps():
    offenders = {path.name: sorted(imported_roots(path) & PROJECT_APPS) for path in ENGINE_FILES}
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_every_module_of_the_connection_reads_in_one_sitting():
    lengths = {path.name: len(path.read_text().splitlines()) for path in ENGINE_FILES}
    assert {name: n for name, n in lengths.items() if n > 400} == {}


def test_no_private_asyncio_protocol_and_no_coroutine_driven_by_hand():
    for path in ENGINE_FILES:
        text = path.read_text()
        assert "_asyncio_future_blocking" not in text, path.name
        assert ".send(None)" not in text and ".throw(" not in text, path.name
