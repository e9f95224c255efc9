"""`make bench`'s metrics cost (issue 22): metrics on and off alternated three times on fresh servers, with
the server CPU per delivery of each run. No figure is asserted: they depend on the machine."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def cpu_per_delivery(raw: dict):
    import importlib.util

    # By path: under tests/ the name "bench" is this test package (tests/bench/__init__.py).
    spec = importlib.util.spec_from_file_location("bench_metrics_cost", REPO / "bench" / "metrics_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cpu_per_delivery(raw)


def test_cpu_per_delivery_reads_the_last_step():
    raw = {
        "steps": [{"received": 10, "usage": {"server_cpu_s": 1.0}}, {"received": 400, "usage": {"server_cpu_s": 0.2}}]
    }
    assert cpu_per_delivery(raw) == (0.0005, 400)
    assert cpu_per_delivery({"error": "boom"}) == (None, 0)


@pytest.mark.live
@pytest.mark.timeout(300)
def test_quick_metrics_cost_alternates_on_and_off_three_times(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench.metrics_cost", "--quick", "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=280, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "metrics-cost.json").read_text())
    assert [(r["round"], r["metrics"]) for r in result["runs"]] == [
        (n, side) for n in (1, 2, 3) for side in ("on", "off")
    ]
    for run in result["runs"]:
        assert run["error"] is None and run["lost"] == 0 and run["deliveries"] > 0, run
        assert run["cpu_s_per_delivery"] > 0
    assert result["overhead_percent"] is not None
    assert "CPU-µs per delivery with metrics on" in done.stderr
