"""The benchmark's outputs: a Markdown table with ratios to the baseline and to RabbitMQ, and a PNG chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LABELS = {
    "baseline": "plain Channels",
    "rabbitmq": "RabbitMQ Web-STOMP",
    "daphne": "project, daphne",
    "uvicorn": "project, uvicorn",
}


def _cell(scenario: Any, figures: dict | None) -> str:
    if not figures:
        return "-"
    if "error" in figures:
        return f"error: {figures['error'][:60]}"
    if scenario.kind == "idle":
        open_, requested = figures.get("open"), figures.get("requested")
        text = f"{figures['kb_per_connection']} kB" if figures.get("kb_per_connection") is not None else "-"
        return text if open_ == requested else f"{text} ({open_}/{requested} open)"
    text = f"{figures['deliveries_per_s']:,}/s"
    if figures.get("p99_ms") is not None:
        text += f" (p99 {figures['p99_ms']:.0f} ms)"
    if scenario.kind == "chat" and figures.get("messages_per_s") is not None:
        text = f"{figures['messages_per_s']:,.0f} stored msg/s, {text}"
    faults = [f"{figures[k]:,} {k.replace('_', '-')}" for k in ("lost", "extra", "out_of_order") if figures.get(k)]
    if figures.get("closes"):
        faults.append(f"{figures['closes']} closed")
    return text + (" ⚠ " + ", ".join(faults) if faults else "")


def _value(scenario: Any, figures: dict | None) -> float | None:
    if not figures or "error" in figures:
        return None
    return figures.get("kb_per_connection") if scenario.kind == "idle" else figures.get("deliveries_per_s")


def _ratio(value: float | None, reference: float | None) -> str:
    if not value or not reference:
        return "-"
    return f"{value / reference:.1f}x"


def write_table(report: dict, chosen: list, path: Path) -> str:
    """Write results.md and return its text."""
    results = report["results"]
    lines = [
        f"# Benchmark results ({'quick mode, not comparable' if report['quick'] else 'full run'})",
        "",
        f"Run {report['started']}, {report['seconds']} s, {report['cpus']} CPUs shared by servers and load "
        f"generator; load average before {report['load_average_before']}, after {report['load_average_after']}.",
        "Ratios are the project's figure divided by the reference's (for RSS per connection lower is better).",
        "",
        "| scenario | plain Channels | RabbitMQ | project, daphne | x plain | x Rabbit "
        "| project, uvicorn | x plain | x Rabbit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for scenario in chosen:
        row = {name: results.get(name, {}).get(scenario.name) for name in LABELS}
        base, rabbit = _value(scenario, row["baseline"]), _value(scenario, row["rabbitmq"])
        cells = [scenario.title, _cell(scenario, row["baseline"]), _cell(scenario, row["rabbitmq"])]
        for name in ("daphne", "uvicorn"):
            value = _value(scenario, row[name])
            cells += [_cell(scenario, row[name]), _ratio(value, base), _ratio(value, rabbit)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Deliveries per server CPU-second and the load generator's CPU (cores) in the max scenarios:",
        "",
        "| scenario | " + " | ".join(LABELS.values()) + " |",
        "|---|" + "---|" * len(LABELS),
    ]
    for scenario in chosen:
        if scenario.kind not in ("max", "chat"):
            continue
        cells = [scenario.title]
        for name in LABELS:
            figures = results.get(name, {}).get(scenario.name) or {}
            per_cpu, generator = figures.get("per_server_cpu_s"), figures.get("loadgen_cores")
            cells.append(f"{per_cpu:,} (loadgen {generator} cores)" if per_cpu else "-")
        lines.append("| " + " | ".join(cells) + " |")
    single = results.get("uvicorn", {}).get("fanout1000_max") or {}
    double = results.get("uvicorn", {}).get("fanout1000_redis2") or {}
    if single.get("deliveries_per_s") and double.get("deliveries_per_s"):
        lines += [
            "",
            f"Second uvicorn process sharing Redis, fan-out 1→1000: {double['deliveries_per_s']:,}/s vs "
            f"{single['deliveries_per_s']:,}/s with one process "
            f"({double['deliveries_per_s'] / single['deliveries_per_s']:.2f}x).",
        ]
    lines += [
        "",
        "Limits the project servers ran with:",
        "",
        "```",
        *(f"{k} = {v!r}" for k, v in sorted(report["limits"].items())),
        "```",
        "",
    ]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def write_chart(report: dict, chosen: list, path: Path) -> None:
    """Deliveries/s (log scale) and p99 per scenario, one bar per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [s for s in chosen if s.kind != "idle"]
    names = [n for n in LABELS if n in report["results"]]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 8), sharex=True)
    width = 0.8 / max(len(names), 1)
    for k, name in enumerate(names):
        figures = [report["results"][name].get(s.name) or {} for s in measured]
        xs = [i + k * width for i in range(len(measured))]
        top.bar(xs, [f.get("deliveries_per_s") or 0 for f in figures], width, label=LABELS[name])
        bottom.bar(xs, [f.get("p99_ms") or 0 for f in figures], width, label=LABELS[name])
    top.set_yscale("log")
    top.set_ylabel("deliveries/s")
    top.legend()
    top.set_title(f"STOMP fan-out, {report['cpus']} CPUs, load average {report['load_average_before']}")
    bottom.set_ylabel("p99 latency (ms)")
    bottom.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(measured))])
    bottom.set_xticklabels([s.name for s in measured], rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
