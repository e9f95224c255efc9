"""The codec and session core stay sans-IO: no Django, asyncio, sockets or threads (import-linter style)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import stompengine.stomp

PACKAGE = Path(stompengine.stomp.__file__).parent
FORBIDDEN = {"django", "channels", "asyncio", "socket", "selectors", "threading", "redis", "time", "asgiref"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_stomp_package_imports_nothing_that_does_io():
    offenders = {path.name: sorted(imported_roots(path) & FORBIDDEN) for path in PACKAGE.glob("*.py")}
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_importing_the_stomp_package_loads_no_io_module():
    code = (
        "import sys; before = set(sys.modules); "
        "import stompengine.stomp, stompengine.stomp.session, stompengine.stomp.heartbeat; "
        f"print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in {sorted(FORBIDDEN)!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                            cwd=PACKAGE.parent.parent)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
