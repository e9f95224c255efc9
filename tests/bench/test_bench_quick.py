"""`make bench`'s quick mode runs end to end: servers started and stopped by PID, table and chart written, the
chat scenario's stored rows checked against what was sent and RECEIPTed.

No timing is asserted: the figures depend on the machine and on whatever else runs on it.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.live, pytest.mark.timeout(400)]


def test_quick_benchmark_writes_table_chart_and_raw_results(tmp_path):
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            "bench/run.py",
            "--quick",
            "--servers",
            "baseline,daphne",
            "--databases",
            "sqlite",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = (out / "results.md").read_text()
    assert "| fan-out 1→20, max |" in table
    assert "STOMP_SEND_RATE" in table  # the limits it ran with are part of the result
    assert (out / "results.png").stat().st_size > 1000
    report = json.loads((out / "results.json").read_text())
    for name in ("baseline", "daphne"):
        for scenario, figures in report["results"][name].items():
            assert "error" not in figures, (name, scenario, figures)
    # The chat scenario on SQLite: stored rows read back match what was sent and RECEIPTed, in order.
    assert "## Chat:" in table
    chat = report["chat"]["results"]["sqlite"]["daphne"]
    assert chat["max"]["stored_per_s"] > 0
    assert chat["paced"]["rate"] > 0
    for kind in ("max", "paced"):
        check = chat[kind]["verified"]
        assert check["ok"], (kind, check)
        assert check["stored"] == check["sent"] == check["receipts"] > 0
    assert "baseline" not in report["chat"]["results"]["sqlite"]  # persisted chat is the project's alone
    assert (out / "chat.png").stat().st_size > 1000
