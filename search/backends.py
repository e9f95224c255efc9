"""The search index behind one interface, chosen by the database in use: PostgreSQL (a tsvector per message
with a GIN index) or SQLite (an FTS5 virtual table). Both tables are created by this app's migrations.

Every function takes the connection's cursor-level view only (ids, room ids, bodies): nothing here imports
the chat models, so the chat writer can call ``index_rows`` inside its transaction without an import cycle.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.db import connections

from chatproject.dbcursors import array_cursor, json_rows
from search.query import Query, fts5_string

#: The PostgreSQL table: one row per message (its id, its room and its tsvector).
PG_TABLE = "search_message"
#: The SQLite FTS5 table: rowid = message id, ``body`` indexed, ``room_id`` stored only.
FTS_TABLE = "search_message_fts"
#: Marks FTS5's highlight() puts around matches: private-use characters no one types.
_OPEN, _CLOSE = "\ue000", "\ue001"
_WORDS = re.compile(r"\w+", re.UNICODE)

Row = tuple[int, int, str]  # (message id, room id, body)

#: ``PostgresBackend.index_rows``'s statement (bench/search.py measures its database cost alone): the text
#: search configuration, then the rows as one JSON array of ``[message id, room id, body]``.
PG_INDEX_ROWS = (
    f"INSERT INTO {PG_TABLE} (message_id, room_id, vector) "  # noqa: S608 - a constant table name
    "SELECT (e->>0)::bigint, (e->>1)::bigint, to_tsvector(%s::regconfig, e->>2) "
    "FROM json_array_elements(%s::json) AS e "
    "ON CONFLICT (message_id) DO UPDATE SET room_id = EXCLUDED.room_id, vector = EXCLUDED.vector"
)


@dataclass(frozen=True)
class Bounds:
    """Which message ids a search may return: ``lowest <= id < below`` (None: no bound)."""

    lowest: int | None = None
    below: int | None = None

    def newest_first(self, column: str, limit: int) -> tuple[str, list]:
        """``AND column >= … AND column < … ORDER BY column DESC LIMIT …`` and its parameters."""
        sql, params = [], []
        if self.lowest is not None:
            sql.append(f"AND {column} >= %s")
            params.append(self.lowest)
        if self.below is not None:
            sql.append(f"AND {column} < %s")
            params.append(self.below)
        sql.append(f"ORDER BY {column} DESC LIMIT %s")
        return " ".join(sql), [*params, limit]


class Backend(Protocol):
    vendor: str

    def index_rows(self, rows: Sequence[Row]) -> None: ...

    def remove(self, message_ids: Sequence[int]) -> None: ...

    def rebuild(self) -> int: ...

    def search(self, *, query: Query, room_ids: Sequence[int], bounds: Bounds, limit: int) -> list[int]: ...

    def highlights(self, *, query: Query, bodies: dict[int, str]) -> dict[int, list[tuple[int, int]]]: ...


class PostgresBackend:
    """``to_tsvector(SEARCH_PG_CONFIG, body)`` per message, GIN-indexed; queries by ``websearch_to_tsquery``,
    room by room (``search_sql``); docs/search.md has the plans."""

    vendor = "postgresql"

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias
        self.config = settings.SEARCH_PG_CONFIG

    def index_rows(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        # Bound on the server, the rows as one JSON parameter: the bodies are not quoted into the text.
        with array_cursor(connections[self.alias]) as cursor:
            cursor.execute(PG_INDEX_ROWS, [self.config, json_rows(list(rows))])

    def remove(self, message_ids: Sequence[int]) -> None:
        with connections[self.alias].cursor() as cursor:
            cursor.execute(f"DELETE FROM {PG_TABLE} WHERE message_id = ANY(%s)", [list(message_ids)])  # noqa: S608

    def rebuild(self) -> int:
        with connections[self.alias].cursor() as cursor:
            cursor.execute(f"TRUNCATE {PG_TABLE}")
            cursor.execute(
                f"INSERT INTO {PG_TABLE} (message_id, room_id, vector) "  # noqa: S608
                "SELECT id, room_id, to_tsvector(%s::regconfig, body) FROM chat_message",
                [self.config],
            )
            return cursor.rowcount

    def search_sql(self, *, query: Query, room_ids: Sequence[int], bounds: Bounds, limit: int) -> tuple[str, list]:
        """The statement ``search`` runs (bench/search.py EXPLAINs it): the newest ``limit`` matches of each room
        (a LATERAL subquery per room), merged. Each room walks its own (room_id, message_id) index backwards and
        stops at ``limit`` matches, or takes the GIN bitmap when the planner expects few matches; so the cost is
        bounded by the user's rooms, never by the whole table (one ``room_id = ANY(…) ORDER BY message_id DESC``
        walk took 0.8 s over 1,000,000 rows for a word common elsewhere and absent from the user's rooms)."""
        tail, tail_params = bounds.newest_first("message_id", limit)
        # Only constant SQL parts are joined here; every value is a parameter.
        lateral = f"SELECT message_id FROM search_message WHERE room_id = r.id AND vector @@ q.q {tail}"  # noqa: S608
        params: list = [self.config, query.raw, list(room_ids), *tail_params, limit]
        sql = (
            "SELECT s.message_id FROM (SELECT websearch_to_tsquery(%s::regconfig, %s) AS q) AS q "  # noqa: S608
            "CROSS JOIN unnest(%s::bigint[]) AS r(id) "
            f"CROSS JOIN LATERAL ({lateral}) AS s ORDER BY s.message_id DESC LIMIT %s"
        )
        return sql, params

    def search(self, *, query: Query, room_ids: Sequence[int], bounds: Bounds, limit: int) -> list[int]:
        sql, params = self.search_sql(query=query, room_ids=room_ids, bounds=bounds, limit=limit)
        with connections[self.alias].cursor() as cursor:
            cursor.execute(sql, params)
            return [row[0] for row in cursor.fetchall()]

    def highlights(self, *, query: Query, bodies: dict[int, str]) -> dict[int, list[tuple[int, int]]]:
        """The words of each body that PostgreSQL's parser and stemmer turn into one of the query's lexemes."""
        words = sorted({w.group() for body in bodies.values() for w in _WORDS.finditer(body)})
        if not words:
            return {}
        sql = (
            "SELECT w FROM unnest(%s::text[]) AS w WHERE tsvector_to_array(to_tsvector(%s::regconfig, w)) "
            "&& tsvector_to_array(to_tsvector(%s::regconfig, %s))"
        )
        with connections[self.alias].cursor() as cursor:
            cursor.execute(sql, [words, self.config, self.config, " ".join(query.positive_terms)])
            matching = {row[0] for row in cursor.fetchall()}
        return {
            pk: [(w.start(), w.end()) for w in _WORDS.finditer(body) if w.group() in matching]
            for pk, body in bodies.items()
        }


class SqliteBackend:
    """An FTS5 table (``porter unicode61`` tokenizer: English stems, case and accents folded)."""

    vendor = "sqlite"

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias

    def index_rows(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        # INSERT OR REPLACE: indexing a message again (an edit) replaces its row.
        sql = f"INSERT OR REPLACE INTO {FTS_TABLE} (rowid, body, room_id) VALUES (%s, %s, %s)"  # noqa: S608
        with connections[self.alias].cursor() as cursor:
            cursor.executemany(sql, [(pk, body, room) for pk, room, body in rows])

    def remove(self, message_ids: Sequence[int]) -> None:
        with connections[self.alias].cursor() as cursor:
            cursor.executemany(f"DELETE FROM {FTS_TABLE} WHERE rowid = %s", [(pk,) for pk in message_ids])  # noqa: S608

    def rebuild(self) -> int:
        with connections[self.alias].cursor() as cursor:
            cursor.execute(f"DELETE FROM {FTS_TABLE}")  # noqa: S608
            cursor.execute(f"INSERT INTO {FTS_TABLE} (rowid, body, room_id) SELECT id, body, room_id FROM chat_message")  # noqa: S608
            return cursor.rowcount

    def search(self, *, query: Query, room_ids: Sequence[int], bounds: Bounds, limit: int) -> list[int]:
        if not room_ids:
            return []
        rooms = ", ".join(["%s"] * len(room_ids))
        tail, tail_params = bounds.newest_first("rowid", limit)
        sql = f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s AND room_id IN ({rooms}) {tail}"  # noqa: S608
        with connections[self.alias].cursor() as cursor:
            cursor.execute(sql, [query.fts5(), *room_ids, *tail_params])
            return [row[0] for row in cursor.fetchall()]

    def highlights(self, *, query: Query, bodies: dict[int, str]) -> dict[int, list[tuple[int, int]]]:
        """FTS5's own highlight(): the tokens it matched, marked in the stored text and turned into ranges."""
        if not bodies:
            return {}
        # An OR of every word of the positive terms: highlight() marks whole phrases of the MATCH expression,
        # and a phrase's words are marked wherever they are (as on PostgreSQL).
        words = {w for text in query.positive_terms for w in _WORDS.findall(text)}
        expression = " OR ".join(fts5_string(word) for word in sorted(words))
        ids = list(bodies)
        marks = ", ".join(["%s"] * len(ids))
        sql = (
            f"SELECT rowid, highlight({FTS_TABLE}, 0, %s, %s) FROM {FTS_TABLE} "  # noqa: S608
            f"WHERE {FTS_TABLE} MATCH %s AND rowid IN ({marks})"
        )
        with connections[self.alias].cursor() as cursor:
            cursor.execute(sql, [_OPEN, _CLOSE, expression, *ids])
            marked = dict(cursor.fetchall())
        return {pk: _ranges(marked[pk], bodies[pk]) for pk in ids if pk in marked}


def _ranges(marked: str, body: str) -> list[tuple[int, int]]:
    """Offsets (in ``body``) of the spans between the marks; none when the body itself holds a mark."""
    if _OPEN in body or _CLOSE in body:
        return []
    ranges, plain, start = [], 0, 0
    for char in marked:
        if char == _OPEN:
            start = plain
        elif char == _CLOSE:
            ranges.append((start, plain))
        else:
            plain += 1
    return ranges if plain == len(body) else []


def backend(alias: str = "default") -> Backend:
    """The backend of the database behind ``alias``."""
    vendor = connections[alias].vendor
    if vendor == "postgresql":
        return PostgresBackend(alias)
    if vendor == "sqlite":
        return SqliteBackend(alias)
    raise NotImplementedError(f"search supports PostgreSQL and SQLite, not {vendor}")


def segments(body: str, ranges: Iterable[tuple[int, int]]) -> list[dict]:
    """``body`` cut into ``{"text", "match"}`` pieces: the page makes text nodes of them, never HTML."""
    out: list[dict] = []
    at = 0
    for start, end in sorted(ranges):
        if start < at or end <= start:
            continue
        if start > at:
            out.append({"text": body[at:start], "match": False})
        out.append({"text": body[start:end], "match": True})
        at = end
    if at < len(body) or not out:
        out.append({"text": body[at:], "match": False})
    return out
