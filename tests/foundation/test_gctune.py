"""The server's garbage collector is set once at start-up (chatproject/gctune.py): the start-up heap frozen,
GC_THRESHOLD applied; each checked in a fresh process that builds the ASGI application as the servers do."""

import json

import pytest

from tests.conftest import REPO
from tests.foundation.test_settings import load_settings

PROBE = (
    "import gc, json; before = gc.get_freeze_count(); import chatproject.asgi; "
    "print(json.dumps({'before': before, 'frozen': gc.get_freeze_count(), 'threshold': gc.get_threshold(), "
    "'young': len(gc.get_objects())}))"
)


def started(**env: str) -> dict:
    result = load_settings(PROBE, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_start_up_heap_is_frozen_by_default():
    state = started()
    assert state["before"] == 0
    # Django, the apps and their modules: tens of thousands of objects no collection walks again.
    assert state["frozen"] > 50_000
    assert state["young"] < 1_000  # nothing of start-up is left in the generations collections walk
    assert tuple(state["threshold"]) == (700, 10, 10)  # the interpreter's, unless GC_THRESHOLD says otherwise


def test_gc_freeze_off_leaves_the_heap_to_the_collector():
    state = started(GC_FREEZE="0")
    assert state["frozen"] == 0
    assert state["young"] > 50_000


def test_gc_threshold_is_applied_at_start_up():
    assert tuple(started(GC_THRESHOLD="5000, 20, 30")["threshold"]) == (5000, 20, 30)


@pytest.mark.parametrize("value", ["700,10", "a,b,c", "0,10,10", "700,-1,10"])
def test_a_gc_threshold_that_cannot_work_refuses_to_start(value):
    result = load_settings(PROBE, GC_THRESHOLD=value)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "GC_THRESHOLD" in result.stderr


def test_the_readme_lists_the_gc_settings():
    readme = (REPO / "README.md").read_text()
    for name in ("GC_FREEZE", "GC_THRESHOLD"):
        assert f"| `{name}` |" in readme, name
