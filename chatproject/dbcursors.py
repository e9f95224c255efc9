"""Passing a batch's rows to PostgreSQL as a few parameters (the chat writer, the search index).

Django's psycopg cursors bind parameters on the client: psycopg then quotes every value into the statement's
text, in Python, and the text changes with every batch. A cursor that binds on the server sends the values
as parameters beside a constant text (which the chat writer also has prepared: chat/writer/store.py's
``_pipelined``). Django's wrapper still turns errors into ``django.db``'s, and the statement still joins the
connection's pipeline.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper


def array_cursor(connection: BaseDatabaseWrapper) -> CursorWrapper:
    """A cursor of ``connection`` binding on the server on PostgreSQL; its ordinary cursor elsewhere."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    import psycopg

    connection.ensure_connection()
    raw: Any = psycopg.Cursor(connection.connection)  # django-stubs type these methods' DB-API cursor as their wrapper
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


def json_rows(rows: object) -> str:
    """Rows as ONE JSON text parameter, unpacked in SQL (``json_to_recordset``, ``json_array_elements``).

    An array parameter costs psycopg a Python call per element to dump it (a 100-message batch is some 1,500
    elements: a fifth of the writer thread's time); ``json.dumps`` is one C call. ASCII-only output, so a
    character PostgreSQL cannot store (NUL) fails the statement as a ``DataError``, like the value itself.
    """
    return json.dumps(rows, separators=(",", ":"))
