"""`make bench`'s quick mode runs end to end: servers started and stopped by PID, table and chart written.

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
    assert report["results"]["daphne"]["chat"]["deliveries_per_s"] > 0
    assert "chat" not in report["results"]["baseline"]  # persisted chat is the project's alone
