"""What metrics cost (issue 22): server CPU-seconds per delivery with METRICS_ENABLED on and off.

One paced fan-out with a RECEIPT per SEND (so the frame, delivery and SEND->RECEIPT hooks all run), on a
fresh daphne per run, alternated on/off for ``ROUNDS`` rounds in one run so that drift of the shared machine
hits both sides alike. The load is paced, not max-rate: both sides do the same work, and the CPU it took
is the cost. Run by ``bench/run.py`` (``make bench``) or alone: ``python -m bench.metrics_cost [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

logger = logging.getLogger("bench")
ROUNDS = 3
TARGET_PERCENT = 5.0


def scenario(quick: bool):
    from bench.run import Scenario

    subs, rate, duration = (20, 100, 3) if quick else (100, 100, 10)
    return Scenario(
        "metrics_cost", f"fan-out 1→{subs} at {rate} SEND/s with receipts",
        ("--subs", str(subs), "--pubs", "1", "--rate", str(rate), "--receipts", "--duration", str(duration),
         "--warmup", "1", "--drain", "5", "--pause", "0.5"),
        kind="sweep", connections=subs + 1, fanout=subs,
    )  # fmt: skip


def cpu_per_delivery(raw: dict) -> tuple[float | None, int]:
    """(server CPU-seconds per delivery, deliveries) of a loadgen result."""
    steps = raw.get("steps") or []
    if not steps:
        return None, 0
    step = steps[-1]
    received, cpu = step.get("received") or 0, (step.get("usage") or {}).get("server_cpu_s")
    return (cpu / received if received and cpu else None), received


def run(*, quick: bool, database: str, tokens: Path, timeout: float) -> dict:
    """``ROUNDS`` rounds of (metrics on, metrics off) on fresh daphne servers; the medians and the overhead."""
    from bench import run as bench

    chosen = scenario(quick)
    samples: dict[str, list[float]] = {"on": [], "off": []}
    runs = []
    for round_number in range(1, ROUNDS + 1):
        for side, enabled in (("on", "1"), ("off", "0")):
            env = bench.project_env(database, METRICS_ENABLED=enabled)
            log = bench.WORK / "metrics-cost.log"
            process, port = bench.start_python_server("daphne", env, log)
            server = bench.Server("daphne", f"ws://127.0.0.1:{port}/ws/websocket", [process], [process.pid])
            try:
                raw = bench.run_loadgen(chosen, server, tokens, f"metrics-{side}/{round_number}", timeout)
            finally:
                server.stop()
            per_delivery, deliveries = cpu_per_delivery(raw)
            lost = sum(s.get("lost", 0) for s in raw.get("steps") or [])
            runs.append({"round": round_number, "metrics": side, "cpu_s_per_delivery": per_delivery,
                         "deliveries": deliveries, "lost": lost, "error": raw.get("error")})  # fmt: skip
            if per_delivery is not None:
                samples[side].append(per_delivery)
            logger.info("metrics %s, round %d: %s CPU-µs per delivery (%d deliveries, %d lost)", side, round_number,
                        f"{per_delivery * 1e6:.2f}" if per_delivery else "?", deliveries, lost)  # fmt: skip
    medians = {side: statistics.median(values) if values else None for side, values in samples.items()}
    overhead = None
    if medians["on"] and medians["off"]:
        overhead = round(100 * (medians["on"] - medians["off"]) / medians["off"], 1)
    return {
        "scenario": chosen.title,
        "rounds": ROUNDS,
        "median_cpu_us_per_delivery": {k: round(v * 1e6, 3) if v else None for k, v in medians.items()},
        "overhead_percent": overhead,
        "target_percent": TARGET_PERCENT,
        "runs": runs,
    }


def describe(result: dict) -> str:
    """One line for the console and results.md."""
    med = result["median_cpu_us_per_delivery"]
    return (f"metrics cost ({result['scenario']}, median of {result['rounds']} alternated rounds): "
            f"{med['on']} CPU-µs per delivery with metrics on, {med['off']} off: "
            f"{result['overhead_percent']} % (target < {result['target_percent']:g} %)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from bench import run as bench

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(bench.RESULTS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[bench %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    bench.WORK.mkdir(parents=True, exist_ok=True)
    database = bench.sqlite_url(bench.WORK / "metrics-cost.sqlite3")
    tokens = bench.WORK / "metrics-cost-tokens.txt"
    bench.prepare_database(database, scenario(args.quick).connections + 1, 0, 0, tokens)
    result = run(quick=args.quick, database=database, tokens=tokens, timeout=120 if args.quick else 400)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "metrics-cost.json").write_text(json.dumps(result, indent=1))
    logger.info("%s", describe(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
