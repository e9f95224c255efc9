"""Both production servers listen with a backlog that holds a reconnect storm's arrivals (not Twisted's 50).

Past the backlog the kernel drops SYNs and clients resend them only after 1, 3, 7… s, which is where a
3,000-client storm against daphne spent most of its time. The listening socket's backlog is read from the
kernel (``ss``: a listening socket's Send-Q is its backlog), on real server processes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from chatproject.daphne_server import LISTEN_BACKLOG, with_backlog

pytestmark = pytest.mark.live


def listen_backlog(port: int) -> int:
    ss = shutil.which("ss")
    if ss is None:
        pytest.fail("ss (iproute2) is not installed")
    out = subprocess.run([ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines() if line.strip()]
    assert len(rows) == 1, out
    return int(rows[0][2])  # State Recv-Q Send-Q …: Send-Q of a listening socket is its backlog


def expected_backlog() -> int:
    return min(LISTEN_BACKLOG, int(Path("/proc/sys/net/core/somaxconn").read_text()))


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_the_server_listens_with_a_storm_sized_backlog(daphne_factory, server):
    process = daphne_factory(server=server)
    assert listen_backlog(process.port) == expected_backlog()


def test_an_endpoint_given_its_own_backlog_keeps_it(daphne_factory):
    process = daphne_factory()
    extra = daphne_factory(extra_args=["-e", f"tcp:port={process.port + 0}:interface=127.0.0.2:backlog=100"])
    assert listen_backlog(extra.port) == expected_backlog()  # -b/-p still get the long backlog
    out = subprocess.run(["ss", "-ltnH", f"src 127.0.0.2:{process.port}"], capture_output=True, text=True).stdout
    assert int(out.split()[2]) == 100, out


def test_with_backlog_adds_it_to_tcp_and_unix_endpoints_only():
    assert with_backlog("tcp:port=8000:interface=127.0.0.1") == "tcp:port=8000:interface=127.0.0.1:backlog=2048"
    assert with_backlog("unix:/run/chat.sock") == "unix:/run/chat.sock:backlog=2048"
    assert with_backlog("tcp:port=8000:backlog=64") == "tcp:port=8000:backlog=64"
    assert with_backlog("fd:fileno=3") == "fd:fileno=3"
