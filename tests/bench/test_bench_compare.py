"""``bench/run.py --compare REV``: the chat scenario runs on this tree and on REV's checkout (servers started from
each tree), and the ratios with their "slower" flag reach results.md, results.json and compare.png.

The live test compares HEAD with itself at the quick chat size (SQLite, daphne, one round): both trees run, the
stored rows are checked. No timing is asserted; the "slower" rule is checked on given figures instead.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def report_module():
    # By path: under tests/ the name "bench" is this test package (tests/bench/__init__.py).
    spec = importlib.util.spec_from_file_location("bench_report", REPO / "bench" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_slower_only_beyond_the_round_to_round_spread():
    figures = report_module().compare_figures
    # 10 % worse on rate with a 20 % spread between rounds: within the noise.
    noisy = {"current": [{"deliveries_per_s": 900}, {"deliveries_per_s": 900}],
             "REV": [{"deliveries_per_s": 900}, {"deliveries_per_s": 1100}]}  # fmt: skip
    out = figures("x", "x", "sweep", noisy, "REV")
    assert out["rate"]["ratio"] == pytest.approx(0.9)
    assert out["spread"] == pytest.approx(0.2)
    assert not out["slower"]
    # 10 % worse per server CPU-second with a 2 % spread: slower, though the rate is the same.
    steady = {"current": [{"deliveries_per_s": 1000, "per_server_cpu_s": 900}] * 2,
              "REV": [{"deliveries_per_s": 1000, "per_server_cpu_s": 1000},
                      {"deliveries_per_s": 1000, "per_server_cpu_s": 1020}]}  # fmt: skip
    out = figures("x", "x", "max", steady, "REV")
    assert out["rate"]["ratio"] == pytest.approx(1.0)
    assert out["slower"]
    # RSS per connection: lower is better, so a larger figure on this tree is a ratio below 1.
    idle = {"current": [{"kb_per_connection": 40}], "REV": [{"kb_per_connection": 20}]}
    out = figures("x", "x", "idle", idle, "REV")
    assert out["rate"]["ratio"] == pytest.approx(0.5)
    assert out["slower"] and not out["spread_known"]
    # A paced sweep that held no rate on this tree where REV held one: slower; the other way round: not.
    assert figures("x", "x", "chat-paced", {"current": [{"rate": 0}], "REV": [{"rate": 40}]}, "REV")["slower"]
    out = figures("x", "x", "chat-paced", {"current": [{"rate": 40}], "REV": [{"rate": 0}]}, "REV")
    assert out["rate"]["ratio"] is None and not out["slower"]
    # An error on this tree where REV measured: slower.
    failed = {"current": [{"error": "boom"}], "REV": [{"stored_per_s": 100, "stored_per_server_cpu_s": 50}]}
    out = figures("x", "x", "chat-max", failed, "REV")
    assert out["slower"] and out["errors"] == ["boom"]


@pytest.mark.live
@pytest.mark.timeout(300)
def test_compare_runs_the_chat_scenario_on_both_trees(tmp_path):
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--compare", "HEAD", "--compare-only", "--rounds", "1",
         "--scenarios", "chat", "--servers", "daphne", "--databases", "sqlite",
         "--out", str(out), "--work", str(tmp_path / "work")],
        cwd=REPO, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    compare = report["compare"]
    assert compare["rev"] == "HEAD" and not compare["skipped"]
    assert {f["key"] for f in compare["figures"]} == {"chat-sqlite-max/daphne", "chat-sqlite-paced/daphne"}
    for key, runs in compare["results"].items():
        for label in ("current", "HEAD"):
            (summary,) = runs[label]  # one round on each tree
            assert "error" not in summary, (key, label, summary)
            assert summary["verified_ok"], (key, label, summary)  # stored rows = sent = RECEIPTed
    chat_max = next(f for f in compare["figures"] if f["kind"] == "chat-max")
    assert chat_max["rate"]["ratio"] > 0 and chat_max["per_cpu"]["ratio"] > 0
    table = (out / "results.md").read_text()
    assert "## This tree vs HEAD" in table
    assert "| chat on SQLite, max, daphne | stored_per_s |" in table
    assert "STOMP_SEND_RATE" in table  # the limits this tree ran with
    assert (out / "compare.png").stat().st_size > 1000


@pytest.mark.live
@pytest.mark.timeout(300)
def test_chat_on_two_workers_with_a_deeper_window_and_writer_processes(tmp_path):
    """``--chat-workers 2`` runs the chat on two processes over one Redis (the production recipe of a 2-core box),
    ``--chat-window`` sets the max load's messages in flight per connection, ``--chat-writer process`` stores each
    worker's batches in a process of its own: all reach the report, the stored rows are still checked, and the
    writer's figures are those of both workers together (measured in their writer processes)."""
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--scenarios", "chat", "--servers", "uvicorn",
         "--databases", "sqlite", "--chat-loads", "max", "--chat-workers", "2", "--chat-window", "4",
         "--chat-writer", "process",
         "--out", str(out), "--work", str(tmp_path / "work")],
        cwd=REPO, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    chat = json.loads((out / "results.json").read_text())["chat"]
    assert chat["workers"] == 2 and chat["config"]["window"] == 4 and chat["writer"] == "process"
    summary = chat["results"]["sqlite"]["uvicorn"]["max"]
    assert summary["verified"]["ok"], summary["verified"]
    assert summary["lost"] == 0 and summary["stored_per_s"] > 0
    raw = chat["raw"]["sqlite"]["uvicorn"]["max"]
    assert raw["url"].count("ws://") == 2  # the connections went to both workers
    # Both workers stored: the summed batches hold every message the load sent.
    sent = summary["verified"]["stored"]
    assert summary["writer"]["batches"] >= 2
    assert summary["writer"]["batches"] * summary["writer"]["units_per_batch"] == pytest.approx(sent, rel=0.01)
    assert summary["writer"]["commit_ms_per_batch"] > 0  # the phases the writer processes measured
    table = (out / "results.md").read_text()
    assert "2 worker processes over one Redis" in table and "process of their own" in table


def test_chat_workers_and_window_must_be_positive():
    for option in ("--chat-workers", "--chat-window"):
        done = subprocess.run(
            [sys.executable, "bench/run.py", "--scenarios", "chat", option, "0", "--out", "/nonexistent"],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode != 0 and f"{option}: at least 1" in done.stderr
