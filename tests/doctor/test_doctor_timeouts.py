"""A deployment that accepts connections and never answers: every check ends, bounded by --timeout, as a FAIL
or WARN line naming the timeout (no check may hang the run)."""

from __future__ import annotations

import socket

from doctor import DoctorOptions, Status, run
from doctor.checks import CHECKS


def test_a_silent_server_makes_checks_time_out_instead_of_hanging():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # the kernel completes handshakes; nobody ever reads or writes
        origin = f"http://127.0.0.1:{silent.getsockname()[1]}"
        options = DoctorOptions(frontend=origin, api=origin, token="eyJ.e30.sig", timeout=0.3, sse_wait=0.3)
        results = run(options)
    assert [r.id for r in results] == [c.id for c in CHECKS]
    assert any("timed out" in (r.cause + " ".join(r.details)) for r in results)
    assert {r.id for r in results if r.status is Status.FAIL} >= {"sockjs-info", "websocket", "sse", "cors"}
