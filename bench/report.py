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
    if chosen and report["results"]:
        lines += pubsub_table(report, chosen)
    if report.get("compare"):
        lines += compare_table(report["compare"])
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


# (rate key, per-server-CPU-second key, higher is better) of each summary kind; the ratio is this tree's
# median over REV's, inverted where lower is better, so that below 1 always means "this tree is worse".
COMPARE_FIGURES = {
    "max": ("deliveries_per_s", "per_server_cpu_s", True),
    "sweep": ("deliveries_per_s", None, True),
    "idle": ("kb_per_connection", None, False),
    "chat-max": ("stored_per_s", "stored_per_server_cpu_s", True),
    "chat-paced": ("rate", None, True),
}


def compare_figures(key: str, title: str, kind: str, runs: dict[str, list[dict]], rev: str) -> dict:
    """Medians of each tree's rounds, the ratios this tree / REV (rate and per server CPU-second; inverted
    where lower is better), the round-to-round spread, and ``slower``: the rate or per-CPU ratio is below 1 by
    more than the spread (the largest (max - min) / median of either tree's rounds). With one round there is no
    spread: any ratio below 1 counts, flagged ``spread_known: false``. No figure on this tree where REV has one
    (an error) counts as slower too."""
    rate_key, cpu_key, higher = COMPARE_FIGURES[kind]
    out: dict = {"key": key, "title": title, "kind": kind, "rate_metric": rate_key,
                 "cpu_metric": cpu_key, "higher_is_better": higher}  # fmt: skip
    spreads: list[float] = []
    slower = False
    for name, metric in (("rate", rate_key), ("per_cpu", cpu_key)):
        if metric is None:
            continue
        values = {
            label: [f.get(metric) for f in runs.get(label, []) if f.get(metric) is not None]
            for label in ("current", rev)
        }
        medians = {label: statistics.median(v) if v else None for label, v in values.items()}
        for v in values.values():
            if len(v) > 1 and statistics.median(v):
                spreads.append((max(v) - min(v)) / statistics.median(v))
        mine, theirs = medians["current"], medians[rev]
        ratio = None  # undefined where the divisor is 0 (e.g. REV's paced sweep held no rate: not worse here)
        if mine is not None and theirs is not None and (theirs if higher else mine):
            ratio = mine / theirs if higher else theirs / mine
        elif theirs and not values["current"]:
            slower = True  # this tree produced no figure (an error) where REV did
        out[name] = {"current": values["current"], "rev": values[rev],
                     "ratio": round(ratio, 3) if ratio is not None else None}  # fmt: skip
    spread = max(spreads) if spreads else 0.0
    for name in ("rate", "per_cpu"):
        ratio = (out.get(name) or {}).get("ratio")
        if ratio is not None and ratio < 1 - spread:
            slower = True
    out["spread"] = round(spread, 3)
    out["spread_known"] = bool(spreads)
    out["slower"] = slower
    out["errors"] = [f["error"] for label_runs in runs.values() for f in label_runs if f.get("error")]
    out["verified_ok"] = all(f.get("verified_ok", True) is not False for r in runs.values() for f in r)
    return out


def compare_table(compare: dict) -> list[str]:
    """Every scenario on this tree and on another revision, run alternately: each round's figures, the ratios
    this / REV of the medians (rate and per server CPU-second; below 1 means this tree is worse, for RSS per
    connection too) and a "slower" flag where a ratio is below 1 by more than the round-to-round spread."""
    rev = compare["rev"]
    figures = compare.get("figures") or []
    slower = [f["title"] for f in figures if f["slower"]]
    lines = [
        "",
        f"## This tree vs {rev} ({compare['sha'][:12]}), every scenario alternated, {compare['rounds']} rounds",
        "",
        f"Ratios are this tree's median / {rev}'s (RSS per connection inverted): below 1 = this tree is worse. "
        "**SLOWER**: a ratio below 1 by more than the spread (the largest (max - min) / median of either tree's "
        "rounds; with one round there is no spread and any ratio below 1 counts).",
        "",
        f"Verdict: {'**' + str(len(slower)) + ' slower**: ' + '; '.join(slower) if slower else 'no scenario slower'}"
        f" ({len(figures)} compared"
        + (f", {len(compare['skipped'])} loads skipped by --max-time" if compare.get("skipped") else "")
        + ").",
        "",
        f"| scenario | metric | this tree | {rev} | ratio | per server CPU-s: this tree | {rev} | ratio | spread "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        rate, cpu = f.get("rate") or {}, f.get("per_cpu") or {}
        verdict = "**SLOWER**" if f["slower"] else "ok"
        if f.get("errors"):
            verdict += f" ({len(f['errors'])} errors: {f['errors'][0][:60]})"
        if f.get("verified_ok") is False:
            verdict += " ✗ stored rows"
        spread = f"{f['spread']:.0%}" if f["spread_known"] else "n/a (1 round)"
        lines.append(
            f"| {f['title']} | {f['rate_metric']} | {_list(rate.get('current'))} | {_list(rate.get('rev'))} "
            f"| {_times(rate.get('ratio'))} | {_list(cpu.get('current'))} | {_list(cpu.get('rev'))} "
            f"| {_times(cpu.get('ratio'))} | {spread} | {verdict} |"
        )
    return lines + compare_reference_lines(compare)


def compare_reference_lines(compare: dict) -> list[str]:
    """Issue 17's ratios of each PostgreSQL chat load to the plain psycopg loops measured right before it, per
    tree and round (``ratio_rows_100_per_commit``: the max target is 0.2, at daphne)."""
    rows = []
    for key, runs in (compare.get("results") or {}).items():
        for label, summaries in runs.items():
            for n, summary in enumerate(summaries, 1):
                ref = summary.get("reference")
                if not ref:
                    continue
                figure = summary.get("stored_per_s", summary.get("rate"))
                rows.append(
                    f"| {key} | {label} | {n} | {_list([figure]) if figure is not None else '-'} "
                    f"| {_list([ref['one_commit_per_row']['rows_per_s']])} "
                    f"| {_list([ref['rows_100_per_commit']['rows_per_s']])} "
                    f"| {_times(summary.get('ratio_one_commit_per_row'))} "
                    f"| {_times(summary.get('ratio_rows_100_per_commit'))} |"
                )
    if not rows:
        return []
    return [
        "",
        "### PostgreSQL loads against the plain psycopg loops measured right before each (issue 17)",
        "",
        "| load | tree | round | stored/s (max) or paced rate | one commit per row, rows/s | 100 rows per commit, "
        "rows/s | ratio to one-commit | ratio to 100-rows |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def _list(values: list | None) -> str:
    return ", ".join(f"{v:,.0f}" if v >= 100 else f"{v:g}" for v in values) if values else "-"


def write_compare_chart(compare: dict, path: Path) -> None:
    """The ratios this tree / REV per scenario (rate and per server CPU-second), the spread as error bars, a
    line at 1: a bar short of 1 by more than its error bar is a slower scenario (red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = compare.get("figures") or []
    fig, ax = plt.subplots(figsize=(12, 0.45 * max(len(figures), 4) + 1.5))
    ys = range(len(figures))
    rates = [(f.get("rate") or {}).get("ratio") or 0 for f in figures]
    cpus = [(f.get("per_cpu") or {}).get("ratio") or 0 for f in figures]
    spreads = [f["spread"] for f in figures]
    colours = ["tab:red" if f["slower"] else "tab:blue" for f in figures]
    ax.barh([y - 0.2 for y in ys], rates, 0.4, xerr=spreads, color=colours, label="rate")
    ax.barh([y + 0.2 for y in ys], cpus, 0.4, xerr=spreads, color=colours, alpha=0.5, label="per server CPU-s")
    ax.axvline(1, color="black", linewidth=1)
    ax.set_yticks(list(ys))
    ax.set_yticklabels([f["title"] for f in figures], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"this tree / {compare['rev']} (below 1: worse; red: slower beyond the round-to-round spread)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
        "members). The rows are read back from the database after each load."
        + (
            f" Each server: {chat['workers']} worker processes over one Redis, the connections spread over them."
            if chat.get("workers", 1) > 1
            else ""
        )
        + (
            " The writer's batches are stored in a process of their own (`CHAT_WRITER_PROCESS=1`), whose CPU"
            " counts as the server's."
            if chat.get("writer") == "process"
            else ""
        ),
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
