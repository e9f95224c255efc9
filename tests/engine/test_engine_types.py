"""The engine type-checks under mypy's strict flags (pyproject's ``[[tool.mypy.overrides]]`` for stompengine.*),
one test per module, so a module that regresses is named."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "stompengine"
MODULES = sorted(path.relative_to(REPO).as_posix() for path in PACKAGE.rglob("*.py"))
ERROR = re.compile(r"^(?P<path>[^:\s]+\.py):\d+: error: ", re.M)


@pytest.fixture(scope="module")
def mypy_errors() -> dict[str, list[str]]:
    """Every error mypy reports for ``-p stompengine``, by file (one run for the whole package)."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "-p", "stompengine"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert "Traceback" not in result.stderr, result.stderr
    errors: dict[str, list[str]] = defaultdict(list)
    for line in result.stdout.splitlines():
        match = ERROR.match(line)
        if match:
            errors[match["path"]].append(line)
    assert result.returncode == (1 if errors else 0), result.stdout + result.stderr
    return errors


def test_the_strict_flags_apply_to_the_engine():
    text = (REPO / "pyproject.toml").read_text()
    overrides = text[text.index("[[tool.mypy.overrides]]") :]
    assert 'module = ["stompengine", "stompengine.*"]' in overrides
    for flag in ("disallow_untyped_defs", "disallow_any_generics", "warn_return_any", "strict_equality"):
        assert f"{flag} = true" in overrides


def test_only_engine_modules_are_reported(mypy_errors):
    assert {path for path in mypy_errors if not path.startswith("stompengine/")} == set()


@pytest.mark.parametrize("module", MODULES)
def test_module_is_clean_under_strict_mypy(mypy_errors, module):
    assert mypy_errors.get(module, []) == []


def test_every_module_is_listed():
    assert len(MODULES) >= 25 and Path("stompengine/conf.py").as_posix() in MODULES
