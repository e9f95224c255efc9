"""The message formatter's parser (static/js/format.js) under Node: links, code, emphasis, hostile input.

The token tree is what the page renders with createElement and text nodes; tests/browser/test_format.py
checks the rendered DOM in Chromium."""

from __future__ import annotations

from tests.conftest import node_script


def test_format_parser_passes_its_node_tests():
    completed = node_script("format_tokens.cjs", timeout=60)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
    assert "# fail 0" in completed.stdout
    assert "# pass 0" not in completed.stdout
