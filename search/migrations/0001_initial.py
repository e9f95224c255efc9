"""The search index tables: on PostgreSQL a tsvector table with a GIN index, on SQLite an FTS5 table; each
part runs only on its database. Existing messages are indexed here; delete triggers keep deletions in step."""

from django.conf import settings
from django.db import migrations

POSTGRES = [
    """CREATE TABLE search_message (
        message_id bigint PRIMARY KEY,
        room_id bigint NOT NULL,
        vector tsvector NOT NULL
    )""",
    # A rare word: a bitmap scan of its few rows. A common one: each of the user's rooms walked backwards on
    # (room_id, message_id) until a page of matches (search/backends.py, PostgresBackend.search_sql).
    "CREATE INDEX search_message_vector ON search_message USING gin (vector)",
    "CREATE INDEX search_message_room ON search_message (room_id, message_id)",
    """CREATE FUNCTION search_message_forget() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'TRUNCATE' THEN
            TRUNCATE search_message;
        ELSE
            DELETE FROM search_message WHERE message_id = OLD.id;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER search_message_deleted AFTER DELETE ON chat_message
        FOR EACH ROW EXECUTE FUNCTION search_message_forget()""",
    """CREATE TRIGGER search_message_truncated AFTER TRUNCATE ON chat_message
        FOR EACH STATEMENT EXECUTE FUNCTION search_message_forget()""",
]
POSTGRES_FILL = (
    "INSERT INTO search_message (message_id, room_id, vector) "
    "SELECT id, room_id, to_tsvector(%s::regconfig, body) FROM chat_message"
)
POSTGRES_DROP = [
    "DROP TRIGGER IF EXISTS search_message_truncated ON chat_message",
    "DROP TRIGGER IF EXISTS search_message_deleted ON chat_message",
    "DROP FUNCTION IF EXISTS search_message_forget()",
    "DROP TABLE IF EXISTS search_message",
]

SQLITE = [
    # rowid = the message id; room_id is stored to filter on, not indexed as text.
    """CREATE VIRTUAL TABLE search_message_fts USING fts5(
        body, room_id UNINDEXED, tokenize = 'porter unicode61 remove_diacritics 2'
    )""",
    """CREATE TRIGGER search_message_fts_deleted AFTER DELETE ON chat_message
        BEGIN DELETE FROM search_message_fts WHERE rowid = OLD.id; END""",
    "INSERT INTO search_message_fts (rowid, body, room_id) SELECT id, body, room_id FROM chat_message",
]
SQLITE_DROP = ["DROP TRIGGER IF EXISTS search_message_fts_deleted", "DROP TABLE IF EXISTS search_message_fts"]


def create(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for sql in POSTGRES:
            schema_editor.execute(sql)
        schema_editor.execute(POSTGRES_FILL, [settings.SEARCH_PG_CONFIG])
    elif vendor == "sqlite":
        for sql in SQLITE:
            schema_editor.execute(sql)
    else:
        raise NotImplementedError(f"search supports PostgreSQL and SQLite, not {vendor}")


def drop(apps, schema_editor):
    for sql in POSTGRES_DROP if schema_editor.connection.vendor == "postgresql" else SQLITE_DROP:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("chat", "0002_direct_room_pair")]
    operations = [migrations.RunPython(create, drop, elidable=False)]
