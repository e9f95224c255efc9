"""The processes of tests, benchmarks and the soak: free loopback ports, waiting for a listener, stopping
by PID (never by name), and a process's memory and CPU time from ``/proc``.

Everything here talks to 127.0.0.1 only and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port nothing listens on right now, on the loopback interface."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = LOOPBACK, *, timeout: float = 0.3) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def wait_port(port: int, process: subprocess.Popen | None = None, *, what: str, timeout: float = 30.0) -> None:
    """Return once ``port`` accepts connections; raise if ``process`` exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        if port_open(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {LOOPBACK}:{port} within {timeout:g} s")


def stop(process: subprocess.Popen, *, timeout: float = 15.0) -> None:
    """SIGTERM by PID, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def rss_kb(pid: int) -> int:
    """Resident memory of a live process, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid} (has it exited?)")


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """User plus system CPU time a process has used so far; with ``reaped_children``, also that of the
    children it has waited for (cutime, cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11 : 15 if reaped_children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")
