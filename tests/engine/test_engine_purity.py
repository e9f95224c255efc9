"""The engine package imports nothing from this project's apps (statically: every import statement, at any depth).

``stompengine`` is installed into other projects (examples/echo); an import of ``chat``, ``accounts`` &c.
anywhere in it, even inside a function, would break there on first use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import stompengine

PACKAGE = Path(stompengine.__file__).parent
PROJECT_APPS = {"chat", "accounts", "notifications", "operations", "chatproject", "doctor"}


def project_imports(path: Path) -> list[str]:
    """``line: module`` for every import of a project app in the file, including function-level ones."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        found += [f"{node.lineno}: {name}" for name in names if name.split(".")[0] in PROJECT_APPS]
    return found


def test_every_engine_module_is_walked():
    modules = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")}
    assert {"conf.py", "metrics.py", "apps.py", "consumers.py", "stomp/session.py", "broker/broker.py"} <= modules


def test_the_walk_sees_function_level_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import json\n\ndef f():\n    from chat import ops\n    import accounts.tokens\n")
    assert project_imports(sample) == ["4: chat", "5: accounts.tokens"]


def test_the_engine_imports_no_project_app():
    offenders = {
        path.relative_to(PACKAGE).as_posix(): project_imports(path)
        for path in sorted(PACKAGE.rglob("*.py"))
        if project_imports(path)
    }
    assert offenders == {}
