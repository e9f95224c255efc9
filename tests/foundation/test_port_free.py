"""``make run`` refuses, with the reason and a way out, to start on a port another server holds."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "port_free.py"


def test_a_taken_port_exits_1_naming_it_and_another_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run([sys.executable, str(SCRIPT), "127.0.0.1", str(port)], capture_output=True, text=True,
                                timeout=30)  # fmt: skip
    assert result.returncode == 1
    assert f"127.0.0.1:{port} is not available" in result.stderr and f"make run PORT={port + 1}" in result.stderr


def test_a_free_port_passes():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run([sys.executable, str(SCRIPT), "127.0.0.1", str(port)], capture_output=True, timeout=30)
    assert result.returncode == 0
