"""The benchmark's outputs: a Markdown table with ratios to the baseline and to RabbitMQ, and a PNG chart."""

from __future__ import annotations

import statistics
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
    lines = [
        f"# Benchmark results ({'quick mode, not comparable' if report['quick'] else 'full run'})",
        "",
        f"Run {report['started']}, {report['seconds']} s, {report['cpus']} CPUs shared by servers and load "
        f"generator; load average before {report['load_average_before']}, after {report['load_average_after']}.",
        "Ratios are the project's figure divided by the reference's (for RSS per connection lower is better).",
    ]
    if chosen:
        lines += pubsub_table(report, chosen)
    if report.get("compare"):
        lines += compare_table(report["compare"], chosen)
    if report.get("chat"):
        lines += chat_table(report["chat"])
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


def pubsub_table(report: dict, chosen: list) -> list[str]:
    results = report["results"]
    lines = [
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
    return lines


def compare_table(compare: dict, chosen: list) -> list[str]:
    """The pub/sub scenarios on this tree and on another revision, run alternately: every round's figure and
    the ratio of the medians (for RSS per connection lower is better)."""
    rev = compare["rev"]
    lines = [
        "",
        f"## This tree vs {rev} ({compare['sha'][:12]}), pub/sub scenarios alternated, {compare['rounds']} rounds",
        "",
        f"| scenario | server | this tree | {rev} | this / {rev} (medians) |",
        "|---|---|---|---|---|",
    ]
    for scenario in chosen:
        for server, runs in compare["results"].get(scenario.name, {}).items():
            values = {label: [_value(scenario, f) for f in figures] for label, figures in runs.items()}
            cells = {label: ", ".join(_cell(scenario, f) for f in figures) for label, figures in runs.items()}
            mine, theirs = _median(values.get("current")), _median(values.get(rev))
            lines.append(f"| {scenario.title} | {server} | {cells.get('current', '-')} | {cells.get(rev, '-')} "
                         f"| {_times(mine / theirs if mine and theirs else None)} |")  # fmt: skip
    return lines


def _median(values: list | None) -> float | None:
    present = [v for v in values or [] if v is not None]
    return statistics.median(present) if present else None


def _times(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def _reference(summary: dict, name: str, default: float | None) -> float | None:
    return ((summary.get("reference") or {}).get(name) or {}).get("rows_per_s") or default


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _verified(check: dict | None) -> str:
    if not check:
        return "-"
    text = f"{check['stored']:,} stored / {check['sent']:,} sent / {check['receipts']:,} RECEIPTs"
    faults = [f"{check[k]} {k}" for k in ("duplicates", "reordered", "unmarked") if check.get(k)]
    return ("✓ " if check.get("ok") else "✗ ") + text + (", " + ", ".join(faults) if faults else "")


def chat_table(chat: dict) -> list[str]:
    """Stored messages/s per database and server, beside the plain psycopg insert loops, and the targets."""
    refs = chat.get("reference") or {}
    one, batched = refs.get("one_commit_per_row"), refs.get("rows_100_per_commit")
    cfg = chat["config"]
    lines = [
        "",
        f"## Chat: {cfg['rooms']} public rooms of {cfg['room_size']}, one user per connection",
        "",
        "Each connection subscribes to `/topic/rooms.<slug>` and SENDs JSON `{body, client_id}` with a RECEIPT "
        f"to `/app/rooms.<slug>`, as the frontend does; max: at most {cfg['window']} messages per connection not "
        "yet seen by the whole room; paced: the highest rate (messages/s over all connections) with p99 ≤ 50 ms, "
        "nothing lost and every RECEIPT. Stored/s = deliveries/s ÷ room size (each message reaches all "
        "members). The rows are read back from the database after each load.",
        "",
        "| database | server | stored msg/s at max | latency at max (p50 / p99) | x one-commit-per-row "
        "| x 100-rows-per-commit | paced, p99 ≤ 50 ms | x one-commit-per-row | check (max) | check (paced) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for db_name, servers in chat["results"].items():
        label = chat.get("databases", {}).get(db_name, {}).get("engine", db_name)
        for server, kinds in servers.items():
            best, paced = kinds.get("max") or {}, kinds.get("paced") or {}
            stored = best.get("stored_per_s")
            if "error" in best:
                max_cells = [f"error: {best['error'][:60]}", "-"]
            else:
                max_cells = [f"{stored:,}" if stored is not None else "-",
                             f"{_ms(best.get('p50_ms'))} / {_ms(best.get('p99_ms'))} ms"]  # fmt: skip
            rate = paced.get("rate")
            max_one, max_batched = (
                _reference(best, "one_commit_per_row", one),
                _reference(best, "rows_100_per_commit", batched),
            )
            paced_one = _reference(paced, "one_commit_per_row", one)
            lines.append("| " + " | ".join([
                label, server, *max_cells,
                _times(stored / max_one if stored and max_one else None),
                _times(stored / max_batched if stored and max_batched else None),
                f"{rate:,}/s (p99 {_ms(paced.get('p99_ms'))} ms)" if rate else ("0" if paced else "-"),
                _times(rate / paced_one if rate is not None and paced_one else None),
                _verified(best.get("verified")), _verified(paced.get("verified")),
            ]) + " |")  # fmt: skip
    for when, values in (chat.get("references") or {}).items():
        cells = {name: f"{figures['rows_per_s']:,} rows/s" for name, figures in values.items()}
        lines.append(
            f"| PostgreSQL, plain psycopg loop | {when} | one commit per row: {cells.get('one_commit_per_row', '-')} "
            f"| | | 100 rows per commit: {cells.get('rows_100_per_commit', '-')} | | | | |"
        )
    if one or batched:
        lines += ["", "PostgreSQL rows are compared with the plain loops measured right before them (with fsync on, "
                      "a shared disk's commit latency drifts by minutes); SQLite rows with the median of all "
                      f"samples: one commit per row {one or 0:,} rows/s, 100 rows per commit {batched or 0:,} "
                      "rows/s."]  # fmt: skip
    lines += ["", "| target (issue 17) | ratio in this run | needed | met |", "|---|---|---|---|"]
    for target in chat.get("targets", []):
        met = "-" if target["met"] is None else ("yes" if target["met"] else "**no**")
        lines.append(f"| {target['target']} | {_times(target['ratio'])} | {target['needed']}x | {met} |")
    databases = chat.get("databases", {})
    if databases:
        lines += ["", "Databases: " + "; ".join(f"{k}: {v}" for k, v in databases.items()) + "."]
    return lines


def write_chat_chart(report: dict, path: Path) -> None:
    """Stored messages/s at max and the paced rate with p99 ≤ 50 ms, per database and server, with the plain
    insert references as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chat = report["chat"]
    bars = [(f"{db}\n{server}", kinds) for db, servers in chat["results"].items() for server, kinds in servers.items()]
    fig, ax = plt.subplots(figsize=(10, 5))
    xs = range(len(bars))
    ax.bar([x - 0.2 for x in xs], [(k.get("max") or {}).get("stored_per_s") or 0 for _, k in bars], 0.4,
           label="stored msg/s at max")  # fmt: skip
    ax.bar([x + 0.2 for x in xs], [(k.get("paced") or {}).get("rate") or 0 for _, k in bars], 0.4,
           label="paced rate, p99 ≤ 50 ms")  # fmt: skip
    refs = chat.get("reference") or {}
    for name, style in (("one_commit_per_row", "--"), ("rows_100_per_commit", ":")):
        if refs.get(name):
            ax.axhline(refs[name], linestyle=style, color="grey",
                       label=f"plain psycopg, {name.replace('_', ' ')} (median): {refs[name]:,}/s")  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylabel("messages/s (log)")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([name for name, _ in bars])
    ax.set_title(f"chat, {report['cpus']} CPUs, load average {report['load_average_before']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
