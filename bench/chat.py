"""The chat scenario of ``make bench``: what the frontend does, on SQLite and on a real PostgreSQL, beside the
"physical limit" of plain psycopg inserts into the same table.

Every connection is its own user in one of the public rooms ``bench-<n>`` (20 rooms of 5 in a full run),
subscribed to ``/topic/rooms.<slug>`` and SENDing JSON ``{"body", "client_id"}`` to ``/app/rooms.<slug>``
with a RECEIPT asked for each message, as static/js/chat.js does. Two loads per database and ASGI server,
each on a freshly started server: as fast as possible with at most ``window`` messages per connection not
yet seen by the whole room ("max"), and a paced sweep that stops at the first rate (after a retry) with
p99 > 50 ms or any loss ("paced"). After each load the stored rows are read back and checked against what
the generator sent and what the server RECEIPTed: nothing missing, duplicated or stored out of order.

The references run on the same PostgreSQL cluster right before each of the project's loads: a plain psycopg
loop inserting the same rows (room, author, a 100-byte body, created, client_id) into ``chat_message``
over TCP with a password, one commit per row and 100 rows per commit. Their rows are deleted afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import statistics
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger("bench")

P99_BOUND_MS = 50
MARKER = re.compile(r"#B\|(\d+)\|(\d+)\|(\d+)\|")
REFERENCE_BATCH = 100  # rows per commit in the batched reference
DATABASES = ("sqlite", "postgres")


@dataclass(frozen=True)
class ChatConfig:
    rooms: int
    room_size: int
    window: int
    max_seconds: float
    warmup: float
    drain: float
    rates: str
    sweep_seconds: float
    reference_seconds: float
    reference_max_rows: int
    loadgen_timeout: float

    @property
    def connections(self) -> int:
        return self.rooms * self.room_size


def config(quick: bool) -> ChatConfig:
    if quick:
        return ChatConfig(
            rooms=4, room_size=5, window=2, max_seconds=1.5, warmup=0.5, drain=5, rates="20,40",
            sweep_seconds=1, reference_seconds=1, reference_max_rows=20_000, loadgen_timeout=120,
        )  # fmt: skip
    return ChatConfig(
        rooms=20, room_size=5, window=2, max_seconds=6, warmup=2, drain=10,
        rates="5,10,25,50,100,200,300,400,600,800,1000,1250,1500,2000,2500,3000,4000,5000,6000",
        sweep_seconds=4, reference_seconds=3, reference_max_rows=100_000, loadgen_timeout=500,
    )  # fmt: skip


def loadgen_args(cfg: ChatConfig, kind: str) -> tuple[str, ...]:
    common = ("--mode", "rooms", "--rooms", str(cfg.rooms), "--room-size", str(cfg.room_size),
              "--sub-dest", "/topic/rooms.bench-{room}", "--pub-dest", "/app/rooms.bench-{room}",
              "--json-send", "--client-id", "--receipts", "--window", str(cfg.window), "--drain", str(cfg.drain),
              "--pause", "1")  # fmt: skip
    if kind == "max":
        return (*common, "--rate", "0", "--duration", str(cfg.max_seconds), "--warmup", str(cfg.warmup))
    return (*common, "--rate", cfg.rates, "--duration", str(cfg.sweep_seconds), "--warmup", "1",
            "--stop-p99", str(P99_BOUND_MS), "--retries", "1")  # fmt: skip


# -- the database side: reading back what was stored ----------------------------------------------------------
@dataclass
class Database:
    kind: str  # sqlite | postgres
    url: str
    path: Path | None = None  # SQLite's file
    admin: Callable[[str], object] | None = None  # PostgreSQL: SQL as the superuser (scripts/postgres.py's psql)

    def settle(self) -> None:
        """Start every load from the same state: dead rows vacuumed and the WAL checkpointed, so that no
        checkpoint or autovacuum left by the previous load (or a reference's 100,000 rows) runs during it."""
        if self.kind == "sqlite":
            with self.connect() as connection:
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        elif self.admin is not None:
            self.admin("VACUUM ANALYZE chat_message")
            self.admin("CHECKPOINT")

    def connect(self):
        if self.kind == "sqlite":
            return contextlib.closing(sqlite3.connect(str(self.path), timeout=30))
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def query(self, sql: str) -> list[tuple]:
        with self.connect() as connection:
            return list(connection.execute(sql).fetchall())

    def last_id(self) -> int:
        return self.query("SELECT coalesce(max(id), 0) FROM chat_message")[0][0]

    def count(self) -> int:
        return self.query("SELECT count(*) FROM chat_message")[0][0]

    def wait_quiet(self, *, seconds: float = 1.0, timeout: float = 15.0) -> None:
        """Until no row has been added for ``seconds`` (a server may still commit its backlog)."""
        deadline = time.monotonic() + timeout
        count, since = self.count(), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < seconds:
            time.sleep(0.2)
            now = self.count()
            if now != count:
                count, since = now, time.monotonic()


def verify(database: Database, since_id: int, result: dict, *, kind: str) -> dict:
    """Compare the rows stored after ``since_id`` with what the generator sent and was RECEIPTed, per step."""
    rows = database.query(f"SELECT id, body FROM chat_message WHERE id > {int(since_id)} ORDER BY id")
    keys, unmarked = [], 0
    for _, body in rows:
        match = MARKER.search(body)
        if match is None:
            unmarked += 1
        else:
            keys.append(tuple(int(g) for g in match.groups()))
    counts = Counter(keys)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    last_seq: dict[tuple[int, int], int] = {}
    reordered = 0
    stored_by_tag: dict[int, int] = defaultdict(int)
    for tag, publisher, seq in dict.fromkeys(keys):  # first occurrence, in id order
        stored_by_tag[tag] += 1
        if seq <= last_seq.get((tag, publisher), -1):
            reordered += 1
        last_seq[(tag, publisher)] = seq
    steps = result.get("steps") or []
    checked = []
    for step in steps:
        passed = not step["lost"] and step.get("missing_receipts") == 0
        if kind == "paced":
            p99 = step["latency_ms"]["p99"]
            passed = passed and p99 is not None and p99 <= P99_BOUND_MS
        checked.append({"tag": step.get("tag"), "rate": step["rate"], "sent": step["sent"],
                        "receipts": step.get("receipts"), "stored": stored_by_tag.get(step.get("tag"), 0),
                        "passed": passed})  # fmt: skip
    # What the sweep's last (failed) step left behind may still be missing; every other step must be exact.
    must_match = [c for c in checked if kind == "max" or c["passed"]]
    exact = all(c["stored"] == c["sent"] == c["receipts"] for c in must_match)
    sent, receipts = result.get("total_sent", 0), result.get("total_receipts", 0)
    return {
        "stored": len(rows),
        "sent": sent,
        "receipts": receipts,
        "duplicates": duplicates,
        "reordered": reordered,
        "unmarked": unmarked,
        "steps": checked,
        "ok": exact and not duplicates and not reordered and not unmarked and (kind != "max" or len(rows) == sent),
    }


# -- the references: plain psycopg inserts into the same table ------------------------------------------------
def plain_inserts(url: str, *, rows_per_commit: int, seconds: float, max_rows: int) -> dict:
    """Insert rows like the project's into chat_message with ``rows_per_commit`` rows per transaction, for at
    most ``seconds`` and ``max_rows``; then delete them. Returns rows/s."""
    import psycopg

    run = f"ref{int(time.time() * 1000) % 10**9}"
    with psycopg.connect(url) as connection:
        pairs = connection.execute(
            "SELECT m.room_id, m.user_id FROM chat_membership m JOIN chat_room r ON r.id = m.room_id "
            "WHERE r.slug LIKE 'bench-%%' ORDER BY m.room_id, m.user_id"
        ).fetchall()
        connection.commit()
        if not pairs:
            raise RuntimeError("no bench rooms to insert into")
        one = "INSERT INTO chat_message (room_id, author_id, body, created, client_id) VALUES (%s, %s, %s, %s, %s)"
        many = one + ", (%s, %s, %s, %s, %s)" * (rows_per_commit - 1)
        sql = (many if rows_per_commit > 1 else one) + " RETURNING id"
        inserted = 0
        started = time.perf_counter()
        deadline = started + seconds
        while inserted < max_rows and time.perf_counter() < deadline:
            params: list = []
            for k in range(inserted, inserted + rows_per_commit):
                room, author = pairs[k % len(pairs)]
                head = f"#R|{run}|{k}|"
                params += [room, author, head + "x" * (100 - len(head)), datetime.now(UTC), f"{run}-{k}"]
            connection.execute(sql, params).fetchall()
            connection.commit()
            inserted += rows_per_commit
        elapsed = time.perf_counter() - started
        connection.execute("DELETE FROM chat_message WHERE client_id LIKE %s", [f"{run}-%"])
        connection.commit()
    return {"rows": inserted, "seconds": round(elapsed, 3), "rows_per_s": round(inserted / elapsed)}


def references(database: Database, cfg: ChatConfig) -> dict:
    out = {}
    for name, batch in (("one_commit_per_row", 1), ("rows_100_per_commit", REFERENCE_BATCH)):
        database.settle()
        out[name] = plain_inserts(database.url, rows_per_commit=batch, seconds=cfg.reference_seconds,
                                  max_rows=cfg.reference_max_rows)  # fmt: skip
        logger.info("reference %s: %s", name, out[name])
    return out


# -- summaries ---------------------------------------------------------------------------------------------------
WRITER_METRICS = re.compile(
    r"^(chat_writer_batch_units|chat_writer_commit_seconds|chat_writer_phase_seconds)_(sum|count)"
    r'(?:\{phase="(\w+)"\})? (\S+)$',
    re.M,
)


def writer_stats(ws_urls: str) -> dict:
    """The server's chat-writer figures after a load (the /metrics of each worker of ``ws_urls``, comma-separated,
    on loopback, summed): batches, units per batch, time per batch in the database. Empty for a tree without
    them (--compare against an older revision)."""
    found: dict[str, float] = {}
    for ws_url in ws_urls.split(","):
        url = re.sub(r"^ws://([^/]+)/.*$", r"http://\1/metrics", ws_url)
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
                text = response.read().decode()
        except OSError:
            return {}
        for name, kind, phase, value in WRITER_METRICS.findall(text):
            key = f"{name}_{kind}{phase}"
            found[key] = found.get(key, 0.0) + float(value)
    batches = found.get("chat_writer_batch_units_count") or 0
    if not batches:
        return {}
    return {
        "batches": int(batches),
        "units_per_batch": round(found.get("chat_writer_batch_units_sum", 0) / batches, 1),
        "store_ms_per_batch": round(1000 * found.get("chat_writer_commit_seconds_sum", 0) / batches, 2),
        # Of those, per phase (lock: the room locks and state read; build: the writer's Python; commit).
        **{
            f"{phase}_ms_per_batch": round(1000 * found[f"chat_writer_phase_seconds_sum{phase}"] / batches, 2)
            for phase in ("lock", "build", "commit")
            if f"chat_writer_phase_seconds_sum{phase}" in found
        },
    }


def summarise_max(result: dict, check: dict, room_size: int) -> dict:
    steps = result.get("steps") or []
    if not steps:
        return {"error": (result.get("error") or "no steps")[:200], "verified": check}
    step = steps[-1]
    return {
        "stored_per_s": round(step["deliveries_per_s"] / room_size),
        "deliveries_per_s": step["deliveries_per_s"],
        "p50_ms": step["latency_ms"]["p50"],
        "p99_ms": step["latency_ms"]["p99"],
        "lost": step["lost"],
        "extra": step["extra"],
        "out_of_order": step["out_of_order"],
        "missing_receipts": step.get("missing_receipts"),
        "server_cores": step["usage"]["server_cores"],
        "stored_per_server_cpu_s": (
            round(step["deliveries_per_server_cpu_s"] / room_size) if step.get("deliveries_per_server_cpu_s") else None
        ),
        "loadgen_cores": step["usage"]["client_cores"],
        "refused": result.get("other_messages", 0),
        "first_refusal": (result.get("first_other_message") or "")[:300],
        "closes": result.get("unexpected_closes", 0),
        "writer": result.get("writer") or {},
        "verified": check,
    }


def summarise_paced(result: dict, check: dict) -> dict:
    steps = result.get("steps") or []
    if not steps:
        return {"error": (result.get("error") or "no steps")[:200], "verified": check}
    by_rate = {s["rate"]: s for s in steps}  # a step that failed and then passed counts as passed
    best = None
    for s in by_rate.values():
        p99 = s["latency_ms"]["p99"]
        if s["lost"] or s.get("missing_receipts") or p99 is None or p99 > P99_BOUND_MS:
            break
        if s["send_rate"] < 0.9 * s["rate"]:  # the generator could not keep the pace
            break
        best = s
    return {
        "rate": best["rate"] if best else 0,
        "p99_ms": best["latency_ms"]["p99"] if best else None,
        "stopped": result.get("stopped"),
        "steps": len(steps),
        "refused": result.get("other_messages", 0),
        "verified": check,
    }


def ratio(value: float | None, reference: float | None) -> float | None:
    return round(value / reference, 3) if value is not None and reference else None


def adjacent(summary: dict | None, refs: dict, name: str) -> float | None:
    """The reference measured right before this load (the disk's fsync latency drifts by minutes on a shared
    machine), else the median of all reference samples."""
    own = ((summary or {}).get("reference") or {}).get(name) or {}
    return own.get("rows_per_s") or median_reference(refs, name)


def targets(results: dict, refs: dict) -> list[dict]:
    """The issue's targets, as ratios within this run (None when a figure is missing). PostgreSQL's loads are
    compared with the references measured right before them; SQLite's with the median of all samples."""
    one = median_reference(refs, "one_commit_per_row")
    pg = results.get("postgres", {})
    sqlite = results.get("sqlite", {})
    pg_max = pg.get("daphne", {}).get("max")
    pg_paced = pg.get("daphne", {}).get("paced")

    def figure(db: dict, server: str, kind: str, key: str) -> float | None:
        return (db.get(server, {}).get(kind) or {}).get(key)

    out = [
        ("PostgreSQL, daphne: max ≥ 2x one-commit-per-row",
         ratio(figure(pg, "daphne", "max", "stored_per_s"), adjacent(pg_max, refs, "one_commit_per_row")), 2),
        ("PostgreSQL, daphne: max ≥ 20 % of 100-rows-per-commit",
         ratio(figure(pg, "daphne", "max", "stored_per_s"), adjacent(pg_max, refs, "rows_100_per_commit")), 0.2),
        ("PostgreSQL, daphne: paced p99 ≤ 50 ms ≥ 0.5x one-commit-per-row",
         ratio(figure(pg, "daphne", "paced", "rate"), adjacent(pg_paced, refs, "one_commit_per_row")), 0.5),
        ("SQLite, daphne: max ≥ 1x PostgreSQL one-commit-per-row",
         ratio(figure(sqlite, "daphne", "max", "stored_per_s"), one), 1),
    ]  # fmt: skip
    for db_name, db in (("PostgreSQL", pg), ("SQLite", sqlite)):
        uvicorn, daphne = figure(db, "uvicorn", "max", "stored_per_s"), figure(db, "daphne", "max", "stored_per_s")
        out.append((f"{db_name}: uvicorn max ≥ daphne max", ratio(uvicorn, daphne), 1))
    return [{"target": name, "ratio": value, "needed": needed, "met": None if value is None else value >= needed}
            for name, value, needed in out]  # fmt: skip


def reference_ratios(summary: dict, reference: dict, kind: str) -> dict:
    """A load's figure over the references measured right before it (``--compare`` keeps them per load)."""
    value = summary.get("stored_per_s" if kind == "max" else "rate")
    return {
        f"ratio_{name}": ratio(value, (reference.get(name) or {}).get("rows_per_s"))
        for name in ("one_commit_per_row", "rows_100_per_commit")
    }


def median_reference(refs: dict, name: str) -> float | None:
    values = [r[name]["rows_per_s"] for r in refs.values() if r.get(name)]
    return round(statistics.median(values)) if values else None


# -- the run -------------------------------------------------------------------------------------------------------
Runner = Callable[..., contextlib.AbstractContextManager]


def one_load(
    database: Database,
    server: str,
    kind: str,
    *,
    cfg: ChatConfig,
    running: Runner,
    loadgen: Callable[..., dict],
    tokens: Path,
    label: str,
) -> tuple[dict, dict]:
    """One load ("max" or "paced") on a freshly started ``server`` (``running`` decides which tree it runs
    from: bench/run.py's --compare passes another revision's), then the stored rows checked.
    Returns (summary, the generator's raw result)."""
    database.settle()
    since = database.last_id()
    with running(server, database.url) as started:
        logger.info("%s (%s)", label, started.url)
        result = loadgen(loadgen_args(cfg, kind), started, tokens, label, cfg.loadgen_timeout)
        database.wait_quiet()
        result["writer"] = writer_stats(started.url)
    check = verify(database, since, result, kind=kind)
    summary = summarise_max(result, check, cfg.room_size) if kind == "max" else summarise_paced(result, check)
    logger.info("%s: %s", label, {k: v for k, v in summary.items() if k != "verified"})
    logger.info("%s stored rows check: %s", label, {k: v for k, v in check.items() if k != "steps"})
    return summary, result


def run(
    *,
    databases: dict[str, Database],
    servers: list[str],
    cfg: ChatConfig,
    running: Runner,
    loadgen: Callable[..., dict],
    tokens: dict[str, Path],
    deadline: float,
    loads: tuple[str, ...] = ("max", "paced"),
) -> dict:
    """Every database x server x load (max, paced), each on a fresh server; references around PostgreSQL's."""
    results: dict = {}
    refs: dict = {}
    raw: dict = {}
    for db_name, database in databases.items():
        for server in servers:
            for kind in loads:
                if time.monotonic() > deadline:
                    logger.warning("--max-time reached: skipping chat %s on %s/%s", kind, db_name, server)
                    continue
                reference = None
                if db_name == "postgres":
                    reference = refs[f"before {server} {kind}"] = references(database, cfg)
                label = f"chat-{db_name}/{server}/{kind}"
                summary, result = one_load(database, server, kind, cfg=cfg, running=running, loadgen=loadgen,
                                           tokens=tokens[db_name], label=label)  # fmt: skip
                if reference is not None:
                    summary["reference"] = reference
                results.setdefault(db_name, {}).setdefault(server, {})[kind] = summary
                raw.setdefault(db_name, {}).setdefault(server, {})[kind] = result
        if db_name == "postgres":
            refs["after"] = references(database, cfg)
    return {
        "config": cfg.__dict__,
        "results": results,
        "references": refs,
        "reference": {name: median_reference(refs, name) for name in ("one_commit_per_row", "rows_100_per_commit")},
        "targets": targets(results, refs),
        "raw": raw,
    }
