"""Search figures (issue 21): GET /api/search/ latency on PostgreSQL over 1,000,000 stored messages in 1,000
rooms for a user who is a member of 50 of them, and what maintaining the index costs the chat write path.

1. Latency. A throwaway cluster (scripts/postgres.py), migrated by bench/prepare.py; rooms, memberships and
   messages loaded with COPY; the search rows filled with one INSERT … SELECT and the GIN index built after
   the load. Bodies are 6-14 words of a Zipf-distributed 2,000-word vocabulary; the common word is in 20 % of
   the messages, the rare one in 0.02 %, and a third word in 20 % of the messages of the rooms the user is not
   in (where one backwards walk of the whole table would find nothing). Each query runs through the whole
   Django view (DRF, the selector, the highlighting, JSON) in a separate process; p50/p99 over ``--queries``
   runs after a warm-up, and the EXPLAIN ANALYZE of the index query of each kind is kept. Targets: p99 under
   100 ms (rare word), under 300 ms (common word).
2. Write path. The chat scenario's max load (bench/chat.py) on a fresh daphne per run, on a PostgreSQL with
   fsync on, with SEARCH_INDEX_ON_WRITE on and off alternated round by round; stored rows are read back and
   checked as in the chat scenario. The ratio on/off is the cost of the index.

Run by ``bench/run.py`` (``make bench``) or alone: ``python -m bench.search [--quick]``.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import logging
import random
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

logger = logging.getLogger("bench")

TARGET_P99_MS = {"rare": 100.0, "common": 300.0}
RARE, COMMON, ELSEWHERE = "xylophone", "meeting", "zeppelin"
RARE_SHARE, COMMON_SHARE = 0.0002, 0.20  # ELSEWHERE: COMMON_SHARE of the messages of rooms the user is not in
AUTHORS = 100
MEMBER_EVERY = 20  # the searcher is a member of every 20th room: 50 of 1,000


def one_row(connection, sql: str, params: list | None = None) -> tuple:
    """The single row a statement returns (psycopg's fetchone() may say None)."""
    row = connection.execute(sql, params).fetchone()
    if row is None:
        raise RuntimeError(f"no row from {sql[:80]!r}")
    return row


def vocabulary(rng: random.Random, size: int = 2000) -> list[str]:
    """Pronounceable filler words (none is a stem of the rare or the common word)."""
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    words: set[str] = set()
    while len(words) < size:
        length = rng.choice((2, 2, 3, 3, 4))
        words.add("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(length)))
    return sorted(words)


def load(url: str, *, messages: int, rooms: int, seed: int = 21) -> dict:
    """Rooms, the searcher's memberships and ``messages`` rows with COPY; then the search rows and the GIN index."""
    import psycopg

    rng = random.Random(seed)
    words = vocabulary(rng)
    weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(words))))
    timings: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as connection:
        users = [row[0] for row in connection.execute("SELECT id FROM auth_user ORDER BY id")]
        searcher, authors = users[0], users[1 : 1 + AUTHORS]
        started = time.perf_counter()
        now = datetime.now(UTC)
        with connection.cursor().copy(
            "COPY chat_room (slug, name, kind, is_private, creator_id, created) FROM STDIN"
        ) as copy:
            for n in range(rooms):
                copy.write_row((f"search-{n}", f"search {n}", "group", n % 7 == 0, searcher, now))
        room_ids = [
            row[0] for row in connection.execute("SELECT id FROM chat_room WHERE slug LIKE 'search-%' ORDER BY id")
        ]
        member_rooms = room_ids[::MEMBER_EVERY]
        members = set(member_rooms)
        with connection.cursor().copy(
            "COPY chat_membership (user_id, room_id, role, joined, last_read_message_id) FROM STDIN"
        ) as copy:
            for room in member_rooms:
                copy.write_row((searcher, room, "member", now, 0))
        logger.info("search bench: loading %d messages into %d rooms (COPY)", messages, rooms)
        first = now - timedelta(milliseconds=messages)
        columns = "room_id, author_id, body, created, client_id"
        with connection.cursor().copy(f"COPY chat_message ({columns}) FROM STDIN") as copy:
            for i in range(messages):
                body = rng.choices(words, cum_weights=weights, k=rng.randint(6, 14))
                draw = rng.random()
                if draw < RARE_SHARE:
                    body.insert(rng.randrange(len(body)), RARE)
                if rng.random() < COMMON_SHARE:
                    body.insert(rng.randrange(len(body)), COMMON)
                room = rng.choice(room_ids)
                if room not in members and rng.random() < COMMON_SHARE:
                    body.insert(rng.randrange(len(body)), ELSEWHERE)
                copy.write_row((room, rng.choice(authors), " ".join(body),
                                first + timedelta(milliseconds=i), None))  # fmt: skip
                if i and i % 200_000 == 0:
                    logger.info("search bench: %d messages copied", i)
        timings["copy_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        logger.info("search bench: indexing (INSERT … SELECT to_tsvector, then CREATE INDEX … USING gin)")
        connection.execute("SET maintenance_work_mem = '256MB'")
        connection.execute("DROP INDEX search_message_vector, search_message_room")
        connection.execute(
            "INSERT INTO search_message (message_id, room_id, vector) "
            "SELECT id, room_id, to_tsvector('english', body) FROM chat_message"
        )
        timings["vectors_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        connection.execute("CREATE INDEX search_message_vector ON search_message USING gin (vector)")
        timings["gin_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        connection.execute("CREATE INDEX search_message_room ON search_message (room_id, message_id)")
        timings["room_index_s"] = round(time.perf_counter() - started, 1)
        connection.execute("VACUUM ANALYZE")
        counts = one_row(
            connection,
            "SELECT count(*) FILTER (WHERE body LIKE %s), count(*) FILTER (WHERE body LIKE %s), "
            "count(*) FILTER (WHERE room_id = ANY(%s) AND body LIKE %s), "
            "count(*) FILTER (WHERE room_id = ANY(%s) AND body LIKE %s), count(*) FROM chat_message",
            [f"%{RARE}%", f"%{COMMON}%", member_rooms, f"%{RARE}%", member_rooms, f"%{COMMON}%"],
        )
        sizes = one_row(
            connection,
            "SELECT pg_size_pretty(pg_total_relation_size('chat_message')), "
            "pg_size_pretty(pg_relation_size('search_message')), "
            "pg_size_pretty(pg_relation_size('search_message_vector')), "
            "pg_size_pretty(pg_relation_size('search_message_room'))",
        )
    logger.info("search bench: loaded in %s", timings)
    return {
        "messages": counts[4], "rooms": rooms, "member_rooms": len(member_rooms), "timings": timings,
        "rare_word": {"word": RARE, "messages": counts[0], "in_member_rooms": counts[2]},
        "common_word": {"word": COMMON, "messages": counts[1], "in_member_rooms": counts[3]},
        "sizes": {"chat_message": sizes[0], "search_message": sizes[1], "gin_index": sizes[2], "room_index": sizes[3]},
    }  # fmt: skip


def measure(queries: int) -> dict:
    """(In its own process, DATABASE_URL set.) Latency of GET /api/search/ through the Django view."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from rest_framework.test import APIClient

    from search.backends import Bounds, PostgresBackend
    from search.query import query_parse
    from search.selectors import searchable_room_ids

    user = get_user_model().objects.order_by("id").first()
    if user is None:
        raise RuntimeError("bench/prepare.py made no user")
    client = APIClient(HTTP_HOST="127.0.0.1")
    client.force_authenticate(user)

    def get(params: dict) -> tuple[float, dict]:
        started = time.perf_counter()
        response = client.get("/api/search/", params)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"search {params}: {response.status_code} {response.content[:300]!r}")
        return elapsed, response.json()

    kinds = {
        "rare": {"q": RARE},
        "common": {"q": COMMON},
        "common, page 5": {"q": COMMON},
        "rare + common (both words)": {"q": f"{RARE} {COMMON}"},
        "common elsewhere, in none of the user's rooms": {"q": ELSEWHERE},
    }
    _, page = get({"q": COMMON})
    for _ in range(3):  # the cursor of page 5 (a small --messages may not have five pages)
        if page["next_cursor"] is None:
            break
        _, page = get({"q": COMMON, "cursor": page["next_cursor"]})
    if page["next_cursor"] is None:
        del kinds["common, page 5"]
    else:
        kinds["common, page 5"]["cursor"] = page["next_cursor"]
    out: dict = {}
    for name, params in kinds.items():
        for _ in range(10):  # warm-up: plans and buffers
            get(params)
        samples = []
        results = 0
        for _ in range(queries):
            elapsed, page = get(params)
            samples.append(elapsed)
            results = len(page["results"])
        samples.sort()
        out[name] = {
            "q": params["q"], "queries": queries, "results_per_page": results,
            "p50_ms": round(statistics.median(samples), 2),
            "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2),
            "max_ms": round(samples[-1], 2),
        }  # fmt: skip
        logger.info("search bench: %s: %s", name, out[name])
    rooms = searchable_room_ids(user=user)
    engine = PostgresBackend()
    plans = {}
    for name, q in (("rare", RARE), ("common", COMMON), ("common elsewhere", ELSEWHERE)):
        query = query_parse(q, max_length=100)
        sql, sql_params = engine.search_sql(query=query, room_ids=rooms, bounds=Bounds(), limit=21)
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, sql_params)
            plans[name] = [row[0] for row in cursor.fetchall()]
    return {"latency": out, "plans": plans}


def latency_run(work: Path, *, messages: int, rooms: int, queries: int) -> dict:
    from bench import run as bench
    from scripts import postgres

    root = work / "search-pg"
    shutil.rmtree(root, ignore_errors=True)
    # fsync off: it only speeds the load up; the measured queries read.
    cluster = postgres.start(root, settings={"fsync": "off"})
    try:
        logger.info("search bench: PostgreSQL %s on 127.0.0.1:%s (pid %s)", cluster.version, cluster.port, cluster.pid)
        bench.prepare_database(cluster.url, 1 + AUTHORS, 0, 0, work / "search-tokens.txt")
        data = load(cluster.url, messages=messages, rooms=rooms)
        argv = [sys.executable, "-m", "bench.search", "--measure", "--queries", str(queries)]
        done = subprocess.run(argv, cwd=bench.REPO, env=bench.project_env(cluster.url), capture_output=True,
                              text=True, timeout=1200, check=False)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"bench/search.py --measure failed ({done.returncode}): {done.stderr[-3000:]}")
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        return {"postgres": cluster.version, "data": data, **measured}
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)  # ~600 MB of data files per run


def index_cost(url: str, *, seconds: float, rounds: int) -> dict:
    """The database's side alone: 100-message transactions like the writer's multi-row INSERT, with and without
    the search rows the writer adds (PostgresBackend.index_rows's own statement, ``PG_INDEX_ROWS``),
    alternated; rows/s of each and the microseconds a message's index row costs. Rows deleted afterwards."""
    import psycopg

    from chatproject.dbcursors import json_rows
    from search.backends import PG_INDEX_ROWS

    rng = random.Random(7)
    words = vocabulary(rng)
    samples: dict[str, list[float]] = {"on": [], "off": []}
    with psycopg.connect(url) as connection:
        room, author = one_row(connection, "SELECT room_id, user_id FROM chat_membership LIMIT 1")
        connection.commit()
        head = "INSERT INTO chat_message (room_id, author_id, body, created, client_id) VALUES "
        sql = head + ", ".join(["(%s, %s, %s, now(), NULL)"] * 100) + " RETURNING id"
        first = one_row(connection, "SELECT coalesce(max(id), 0) FROM chat_message")[0]
        for _ in range(rounds):
            for side in ("off", "on"):
                rows, started = 0, time.perf_counter()
                while time.perf_counter() - started < seconds:
                    bodies = ["#I " + " ".join(rng.choices(words, k=rng.randint(6, 14))) for _ in range(100)]
                    ids = [r[0] for r in connection.execute(sql, [v for b in bodies for v in (room, author, b)])]
                    if side == "on":
                        indexed = [[pk, room, body] for pk, body in zip(ids, bodies, strict=True)]
                        connection.execute(PG_INDEX_ROWS, ["english", json_rows(indexed)])
                    connection.commit()
                    rows += len(ids)
                samples[side].append(rows / (time.perf_counter() - started))
        connection.execute("DELETE FROM chat_message WHERE id > %s AND body LIKE '#I %%'", [first])
        connection.commit()
    on, off = statistics.median(samples["on"]), statistics.median(samples["off"])
    return {
        "rows_per_s": {"on": round(on), "off": round(off)}, "ratio_on_off": round(on / off, 3),
        "us_per_message_indexed": round(1e6 / on - 1e6 / off, 1), "rounds": rounds, "seconds": seconds,
        "samples": {k: [round(v) for v in vs] for k, vs in samples.items()},
    }  # fmt: skip


def write_path_run(work: Path, *, quick: bool, rounds: int) -> dict:
    """The chat scenario's max load with the index maintained and not, alternated on fresh daphne servers."""
    from bench import chat
    from bench import run as bench
    from scripts import postgres

    cfg = chat.config(quick)
    root = work / "search-write-pg"
    shutil.rmtree(root, ignore_errors=True)
    cluster = postgres.start(root, settings={"fsync": "on"})
    try:
        tokens = work / "search-write-tokens.txt"
        bench.prepare_database(cluster.url, cfg.connections, cfg.rooms, cfg.room_size, tokens)
        database = chat.Database(
            "postgres", cluster.url, admin=functools.partial(cluster.psql, database=cluster.database)
        )
        database.settle()
        cost = index_cost(cluster.url, seconds=1 if quick else 3, rounds=3)
        logger.info("search bench: 100-message transactions, index rows on vs off: %s", cost)
        runs = []
        for round_number in range(1, rounds + 1):
            reference = chat.references(database, cfg)
            for side, enabled in (("on", "1"), ("off", "0")) if round_number % 2 else (("off", "0"), ("on", "1")):
                database.settle()
                since = database.last_id()
                indexed_before = database.query("SELECT count(*) FROM search_message")[0][0]
                env = bench.project_env(cluster.url, SEARCH_INDEX_ON_WRITE=enabled)
                process, port = bench.start_python_server("daphne", env, bench.WORK / "search-write.log")
                server = bench.Server("daphne", f"ws://127.0.0.1:{port}/ws/websocket", [process], [process.pid])
                try:
                    label = f"search-write/{side}/{round_number}"
                    scenario = bench.Scenario("chat", "chat", chat.loadgen_args(cfg, "max"), kind="chat")
                    result = bench.run_loadgen(scenario, server, tokens, label, cfg.loadgen_timeout)
                    database.wait_quiet()
                finally:
                    server.stop()
                check = chat.verify(database, since, result, kind="max")
                summary = chat.summarise_max(result, check, cfg.room_size)
                stored = database.query(f"SELECT count(*) FROM chat_message WHERE id > {int(since)}")[0][0]
                indexed = database.query("SELECT count(*) FROM search_message")[0][0] - indexed_before
                summary.update(index=side, round=round_number, stored=stored, indexed=indexed,
                               reference=reference)  # fmt: skip
                runs.append(summary)
                logger.info("search bench: write path, index %s, round %d: %s stored/s, p50/p99 %s/%s ms, "
                            "%d stored, %d indexed", side, round_number, summary.get("stored_per_s"),
                            summary.get("p50_ms"), summary.get("p99_ms"), stored, indexed)  # fmt: skip
        return {**summarise_write(runs), "database_alone": cost}
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)  # ~600 MB of data files per run


def summarise_write(runs: list[dict]) -> dict:
    def median(side: str, key: str) -> float | None:
        values = [r[key] for r in runs if r.get("index") == side and r.get(key) is not None]
        return round(statistics.median(values), 1) if values else None

    on, off = median("on", "stored_per_s"), median("off", "stored_per_s")
    refs = [r["reference"]["one_commit_per_row"]["rows_per_s"] for r in runs if r.get("index") == "on"]
    refs100 = [r["reference"]["rows_100_per_commit"]["rows_per_s"] for r in runs if r.get("index") == "on"]
    one, hundred = (statistics.median(refs) if refs else None), (statistics.median(refs100) if refs100 else None)
    return {
        "stored_per_s": {"on": on, "off": off},
        "p99_ms": {"on": median("on", "p99_ms"), "off": median("off", "p99_ms")},
        "ratio_on_off": round(on / off, 3) if on and off else None,
        "on_x_one_commit_per_row": round(on / one, 2) if on and one else None,
        "on_x_100_rows_per_commit": round(on / hundred, 3) if on and hundred else None,
        "all_verified": all((r.get("verified") or {}).get("ok", False) for r in runs),
        "all_indexed": all(r["indexed"] == (r["stored"] if r["index"] == "on" else 0) for r in runs),
        "runs": [{k: v for k, v in r.items() if k != "verified"} | {"verified_ok": (r.get("verified") or {}).get("ok")}
                 for r in runs],
    }  # fmt: skip


def markdown(result: dict) -> str:
    lat = result.get("latency") or {}
    data = lat.get("data") or {}
    lines = ["# Search (issue 21)", "", f"Run {result['started']}, {result['seconds']} s, "
             f"{'quick' if result['quick'] else 'full'} run; PostgreSQL {lat.get('postgres', '?')}.", ""]  # fmt: skip
    if lat:
        rare, common = data["rare_word"], data["common_word"]
        lines += [
            f"## Latency of GET /api/search/ over {data['messages']:,} messages in {data['rooms']:,} rooms, "
            f"for a member of {data['member_rooms']} rooms",
            "",
            f"Rare word `{rare['word']}`: {rare['messages']:,} messages ({rare['in_member_rooms']} in the user's "
            "rooms); "
            f"common word `{common['word']}`: {common['messages']:,} ({common['in_member_rooms']:,} in the user's "
            f"rooms). Load: COPY {data['timings']['copy_s']} s, vectors {data['timings']['vectors_s']} s, GIN "
            f"{data['timings']['gin_s']} s, (room_id, message_id) btree {data['timings'].get('room_index_s')} s; "
            f"sizes {data['sizes']}. Each query goes through the whole view (DRF, "
            "selector, highlighting, JSON) in one process; 20 results a page.",
            "",
            "| query | q | queries | results | p50 | p99 | target p99 | met |",
            "|---|---|---|---|---|---|---|---|",
        ]  # fmt: skip
        for name, row in lat["latency"].items():
            target = TARGET_P99_MS.get(name)
            met = "" if target is None else ("yes" if row["p99_ms"] < target else "**no**")
            lines.append(f"| {name} | `{row['q']}` | {row['queries']} | {row['results_per_page']} | {row['p50_ms']} ms "
                         f"| {row['p99_ms']} ms | {f'< {target:g} ms' if target else ''} | {met} |")  # fmt: skip
        for name, plan in lat["plans"].items():
            lines += ["", f"EXPLAIN ANALYZE, {name} word:", "", "```", *plan, "```"]
    write = result.get("write_path")
    if write:
        lines += [
            "", "## The chat write path with the search index maintained (PostgreSQL, fsync on, daphne, max load)", "",
            f"Median stored msg/s: index on {write['stored_per_s']['on']}, off {write['stored_per_s']['off']}: "
            f"**ratio on/off {write['ratio_on_off']}**; p99 {write['p99_ms']['on']} vs {write['p99_ms']['off']} ms. "
            f"With the index on: {write['on_x_one_commit_per_row']}x one-commit-per-row (issue 17: ≥ 2x), "
            f"{write['on_x_100_rows_per_commit']}x 100-rows-per-commit (issue 17: ≥ 0.2x). Every stored row "
            f"verified: {write['all_verified']}; every row indexed (and none with it off): {write['all_indexed']}.",
            "",
            *([f"The database alone (100-message transactions, INSERT … RETURNING then the writer's search rows, "
               f"alternated {write['database_alone']['rounds']} x {write['database_alone']['seconds']} s): "
               f"{write['database_alone']['rows_per_s']['on']:,} rows/s with the index rows, "
               f"{write['database_alone']['rows_per_s']['off']:,} without: ratio "
               f"{write['database_alone']['ratio_on_off']}, {write['database_alone']['us_per_message_indexed']} µs "
               "per message indexed.", ""] if write.get("database_alone") else []),
            "| round | index | stored msg/s | p50 / p99 | stored | indexed | one-commit-per-row ref |",
            "|---|---|---|---|---|---|---|",
        ]  # fmt: skip
        for r in write["runs"]:
            lines.append(f"| {r['round']} | {r['index']} | {r.get('stored_per_s')} | {r.get('p50_ms')} / "
                         f"{r.get('p99_ms')} ms | {r['stored']} | {r['indexed']} | "
                         f"{r['reference']['one_commit_per_row']['rows_per_s']} rows/s |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 messages, 50 queries")
    parser.add_argument("--out", default=None)
    parser.add_argument("--work", default=None)
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument("--write-rounds", type=int, default=None, help="0: skip the write-path comparison")
    parser.add_argument("--no-latency", action="store_true", help="only the write-path comparison")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the in-Django half
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[bench %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    if args.measure:
        print(json.dumps(measure(args.queries)))
        return 0
    from bench import run as bench

    work = Path(args.work) if args.work else bench.WORK
    bench.WORK = work
    out = Path(args.out) if args.out else bench.RESULTS
    work.mkdir(parents=True, exist_ok=True)
    messages = args.messages or (100_000 if args.quick else 1_000_000)
    queries = args.queries or (50 if args.quick else 300)
    rounds = args.write_rounds if args.write_rounds is not None else 3
    started = time.monotonic()
    result: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick}
    if not args.no_latency:
        result["latency"] = latency_run(work, messages=messages, rooms=args.rooms, queries=queries)
    if rounds:
        result["write_path"] = write_path_run(work, quick=args.quick, rounds=rounds)
    result["seconds"] = round(time.monotonic() - started)
    out.mkdir(parents=True, exist_ok=True)
    (out / "search.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "search.md").write_text(markdown(result))
    logger.info("search bench: results in %s", out / "search.md")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
