"""The batched write path on a real PostgreSQL (scripts/postgres.py) with two daphne processes sharing Redis:
concurrent senders keep per-room id order and exact resume; a refused row fails alone; the database
connection dying mid-batch refuses that batch's SENDs, and the next batches succeed."""

from __future__ import annotations

import json
import os
import signal

import psycopg
import pytest
from django.contrib.auth import get_user_model

from tests.chat.test_writer_live import ROOMS, burst, client, errors_of, ids_on, writer_process_of
from tests.conftest import access_token_for, wait_for
from tests.observability.scrape import scrape, total
from tests.reliability.live_stomp import LiveStomp

pytestmark = pytest.mark.live


class Database:
    """SQL against the cluster the servers use (the tests' own Django database stays SQLite)."""

    def __init__(self, conninfo: str) -> None:
        self.connection = psycopg.connect(conninfo, autocommit=True)

    def rows(self, sql: str, *params) -> list[tuple]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params or None)
            return cursor.fetchall() if cursor.description else []

    def room_ids(self, slug: str) -> list[int]:
        sql = "SELECT m.id FROM chat_message m JOIN chat_room r ON r.id = m.room_id WHERE r.slug = %s ORDER BY m.id"
        return [i for (i,) in self.rows(sql, slug)]

    def bodies(self) -> list[str]:
        return [b for (b,) in self.rows("SELECT body FROM chat_message ORDER BY id")]


@pytest.fixture
def pg(postgres_cluster):
    db = Database(postgres_cluster.conninfo)
    db.rows("TRUNCATE notifications_notification, chat_message, chat_membership, chat_room, auth_user "
            "RESTART IDENTITY CASCADE")  # fmt: skip
    users = []
    for i in range(6):
        (user_id,) = db.rows(
            "INSERT INTO auth_user (username, password, is_superuser, is_staff, is_active, first_name, last_name, "
            "email, date_joined) VALUES (%s, '!', false, false, true, '', '', '', now()) RETURNING id",
            f"user{i}",
        )[0]
        users.append(get_user_model()(id=user_id, username=f"user{i}", is_active=True))  # for tokens only
    for slug in ROOMS:
        (room_id,) = db.rows(
            "INSERT INTO chat_room (slug, name, kind, is_private, creator_id, created) "
            "VALUES (%s, %s, 'group', false, %s, now()) RETURNING id",
            slug, slug.title(), users[0].pk,
        )[0]  # fmt: skip
        for user in users:
            db.rows("INSERT INTO chat_membership (user_id, room_id, role, joined, last_read_message_id) "
                    "VALUES (%s, %s, 'member', now(), 0)", user.pk, room_id)  # fmt: skip
    yield db, users
    db.rows("DROP TRIGGER IF EXISTS slow_or_poison ON chat_message")
    db.rows("DROP FUNCTION IF EXISTS slow_or_poison()")
    db.connection.close()


@pytest.fixture(params=["thread", "process"])
def servers(request, daphne_factory, redis_server, postgres_cluster):
    """Two daphne processes on the cluster and one Redis; each test runs with the writer's batches stored in a
    thread of the server and in a process of its own (``CHAT_WRITER_PROCESS``), which must behave the same."""

    def start(**env: str):
        url = f"redis://127.0.0.1:{redis_server.port}/0"
        common = {"REDIS_URL": url, "DATABASE_URL": postgres_cluster.url,
                  "CHAT_WRITER_PROCESS": "1" if request.param == "process" else "0", **env}  # fmt: skip
        return daphne_factory(**common), daphne_factory(**common)

    return start


def test_many_senders_on_two_processes_keep_each_rooms_order_and_resume_exact_on_postgres(servers, pg):
    db, users = pg
    one, two = servers()
    watchers = [client(server, users[0], rooms=ROOMS) for server in (one, two)]
    senders = [client((one, two)[i % 2], user) for i, user in enumerate(users)]
    per_sender = 40
    burst(senders, per_sender)
    rows = db.rows("SELECT author_id, client_id FROM chat_message")
    assert len(rows) == len(set(rows)) == per_sender * len(senders)
    for slug in ROOMS:
        expected = db.room_ids(slug)
        for watcher in watchers:
            watcher.until(lambda _f, w=watcher, s=slug, e=expected: len(ids_on(w, s)) >= len(e), slug, 30)
            assert ids_on(watcher, slug) == expected
    expected = db.room_ids("beta")
    for since in (0, expected[len(expected) // 3], expected[-1]):
        resumed = client(two, users[3], rooms=("beta",), since=since)
        wanted = [i for i in expected if i > since]
        if wanted:
            resumed.until(lambda _f, r=resumed, w=wanted: len(ids_on(r, "beta")) >= len(w), f"resume {since}", 20)
        assert ids_on(resumed, "beta") == wanted
        resumed.close()
    for stomp in (*watchers, *senders):
        stomp.close()


TRIGGER = """
CREATE FUNCTION slow_or_poison() RETURNS trigger AS $$
BEGIN
  IF NEW.body LIKE 'poison%' THEN
    RAISE EXCEPTION 'poisoned message' USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.body LIKE 'slow%' THEN
    PERFORM pg_sleep(30);
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql
"""


def test_a_refused_row_fails_alone_and_a_dead_connection_fails_its_batch_then_later_batches_succeed(servers, pg):
    db, users = pg
    db.rows(TRIGGER)
    db.rows("CREATE TRIGGER slow_or_poison BEFORE INSERT ON chat_message "
            "FOR EACH ROW EXECUTE FUNCTION slow_or_poison()")  # fmt: skip
    one, _two = servers(CHAT_WRITE_WINDOW_MS="300")
    alice = client(one, users[0], rooms=("alpha",))

    # Frames of one connection are handled in order, so a batch gathers the SENDs of several connections.
    bob, carol = client(one, users[1]), client(one, users[2])
    trio = (alice, bob, carol)

    # A constraint: the poisoned row alone is refused, the rest of its batch is stored.
    for stomp, body in zip(trio, ("fine 1", "poison", "fine 2"), strict=True):
        stomp.send_json("/app/rooms.alpha", {"body": body, "client_id": body}, receipt=body)
    alice.receipt("fine 1")
    carol.receipt("fine 2")
    bob.until(lambda _f: errors_of(bob), "the refused row's error")
    assert [(e["receipt"], e["code"]) for e in errors_of(bob)] == [("poison", "invalid")]
    assert sorted(db.bodies()) == ["fine 1", "fine 2"]

    # The database connection dies in the middle of a batch: every SEND of it is refused, none stored.
    for stomp, body in zip(trio, ("slow 1", "slow 2", "slow 3"), strict=True):
        stomp.send_json("/app/rooms.alpha", {"body": body, "client_id": body}, receipt=body)
    sleeping = "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND pid <> pg_backend_pid()"
    wait_for(lambda: bool(db.rows(sleeping)), timeout=20, what="the batch to be inside its INSERT")
    db.rows(f"SELECT pg_terminate_backend(pid) FROM ({sleeping}) AS s")
    for stomp, body in zip(trio, ("slow 1", "slow 2", "slow 3"), strict=True):
        stomp.until(lambda _f, s=stomp, b=body: any(e["receipt"] == b for e in errors_of(s)), f"{body} refused", 20)
        assert [e["code"] for e in errors_of(stomp) if e["receipt"] == body] == ["write-failed"]
        assert body not in stomp.receipts()
    assert sorted(db.bodies()) == ["fine 1", "fine 2"]

    # Later batches succeed on the same connection (the writer takes a fresh database connection).
    alice.send_json("/app/rooms.alpha", {"body": "fine 3", "client_id": "fine 3"}, receipt="fine 3")
    alice.receipt("fine 3", timeout=20)
    assert sorted(db.bodies()) == ["fine 1", "fine 2", "fine 3"]
    alice.until(lambda _f: len(ids_on(alice, "alpha")) >= 3, "three broadcasts")
    assert ids_on(alice, "alpha") == db.room_ids("alpha")
    for stomp in trio:
        assert stomp.close_code is None
        stomp.close()


def seqs_on(stomp, slug: str) -> list[tuple[str, int]]:
    return [(f.get("event"), int(f.get("event-seq"))) for f in stomp.messages(f"/topic/rooms.{slug}")]


def test_edits_and_reactions_from_two_processes_number_each_rooms_events_without_gap_on_postgres(servers, pg):
    """Issue 20: changes pipelined from both processes at once take each room's next number in the batch's
    transaction; every watcher sees 1..N in order, and a since-seq resume gets exactly the stored tail."""
    db, users = pg
    one, two = servers()
    watchers = [client(server, users[0], rooms=ROOMS) for server in (one, two)]
    senders = [client((one, two)[i % 2], user) for i, user in enumerate(users)]
    burst(senders, 3)
    messages = db.rows("SELECT m.id, r.slug FROM chat_message m JOIN chat_room r ON r.id = m.room_id ORDER BY m.id")
    for i, sender in enumerate(senders):  # every user reacts to every message (and edits their own), pipelined
        own = {mid for (mid,) in db.rows("SELECT id FROM chat_message WHERE author_id = %s", users[i].pk)}
        for n, (message_id, slug) in enumerate(messages):
            sender.send_json(f"/app/rooms.{slug}.react", {"id": message_id, "emoji": "👍"}, receipt=f"x{n}")
            if message_id in own:
                sender.send_json(f"/app/rooms.{slug}.edit", {"id": message_id, "body": "edited"}, receipt=f"e{n}")
    for sender in senders:
        sender.receipt(f"x{len(messages) - 1}", timeout=60)
        assert not errors_of(sender)
    for slug in ROOMS:
        stored = db.rows("SELECT e.seq FROM chat_roomevent e JOIN chat_room r ON r.id = e.room_id "
                         "WHERE r.slug = %s ORDER BY e.seq", slug)  # fmt: skip
        total = len(stored)
        assert [s for (s,) in stored] == list(range(1, total + 1))
        assert total == 6 + 6 * 6 + 6  # 6 messages, 6 reactions to each, each author's edit of their own
        for watcher in watchers:
            watcher.until(lambda _f, w=watcher, s=slug, t=total: len(seqs_on(w, s)) >= t, slug, 30)
            assert [s for _, s in seqs_on(watcher, slug)] == list(range(1, total + 1))
        resumed = LiveStomp.connect(f"{two.ws_url}/ws", access_token_for(users[5]))
        resumed.send("SUBSCRIBE", id="r", destination=f"/topic/rooms.{slug}", receipt="r", **{"since-seq": "20"})
        resumed.receipt("r")
        resumed.until(lambda _f, r=resumed, s=slug, t=total: len(seqs_on(r, s)) >= t - 20, f"resume {slug}", 20)
        assert [s for _, s in seqs_on(resumed, slug)] == list(range(21, total + 1))
        resumed.close()
    for stomp in (*watchers, *senders):
        stomp.close()


def test_a_client_id_repeated_within_a_batch_and_later_is_stored_once_and_ids_follow_the_batch_order_on_postgres(
    servers, pg
):
    """The PostgreSQL statements of a batch (arrays, chat/writer/store.py): a client_id repeated in one batch and
    in a later one is stored once under one id, and every row of the batch gets its own id back (RETURNING in
    the order the rows went in): each broadcast carries the id and body the database holds, in id order."""
    db, users = pg
    one, _two = servers(CHAT_WRITE_WINDOW_MS="300")  # a long window: the SENDs below share one batch
    tabs = [client(one, users[0], rooms=("alpha",)) for _ in range(3)]
    others = [client(one, user) for user in users[1:4]]
    for n, tab in enumerate(tabs):
        tab.send_json("/app/rooms.alpha", {"body": f"hello {n}", "client_id": "same"}, receipt=f"r{n}")
    for n, other in enumerate(others):
        other.send_json("/app/rooms.alpha", {"body": f"other {n}", "client_id": f"o{n}"}, receipt=f"o{n}")
    for n, tab in enumerate(tabs):
        tab.receipt(f"r{n}")
    for n, other in enumerate(others):
        other.receipt(f"o{n}")
    tabs[0].send_json("/app/rooms.alpha", {"body": "hello later", "client_id": "same"}, receipt="later")
    tabs[0].receipt("later")
    rows = db.rows("SELECT id, body FROM chat_message WHERE client_id = 'same'")
    assert len(rows) == 1 and rows[0][1] in {"hello 0", "hello 1", "hello 2"}
    tabs[0].until(lambda _f: len(ids_on(tabs[0], "alpha")) >= 7, "seven announcements")
    announced = [json.loads(f.body) for f in tabs[0].messages("/topic/rooms.alpha")]
    assert [m["id"] for m in announced].count(rows[0][0]) == 4  # re-announced under its one id (clients dedupe)
    stored = dict(db.rows("SELECT id, body FROM chat_message"))
    assert {m["id"]: m["body"] for m in announced} == stored
    assert len(stored) == 4
    first = list(dict.fromkeys(m["id"] for m in announced))
    assert first == sorted(first) == db.room_ids("alpha")  # each new id announced once, in id order
    for stomp in (*tabs, *others):
        assert not errors_of(stomp)
        stomp.close()


EVENT_TRIGGER = """
CREATE FUNCTION poison_event() RETURNS trigger AS $$
BEGIN
  IF (SELECT body FROM chat_message WHERE id = NEW.message_id) LIKE 'poison%' THEN
    RAISE EXCEPTION 'poisoned event' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql
"""


def test_a_statement_that_fails_late_in_the_pipeline_refuses_its_unit_alone_and_no_receipt_precedes_the_commit(
    servers, pg
):
    """The room-event INSERT returns nothing, so in psycopg's pipeline mode its error surfaces only at the
    COMMIT: the batch is still redone unit by unit, the poisoned SEND alone is refused, the others are stored
    with their events, and no RECEIPT is sent for what did not commit."""
    db, users = pg
    db.rows(EVENT_TRIGGER)
    db.rows("CREATE TRIGGER poison_event BEFORE INSERT ON chat_roomevent FOR EACH ROW EXECUTE FUNCTION poison_event()")
    try:
        one, _two = servers(CHAT_WRITE_WINDOW_MS="300")  # the three SENDs share one batch
        trio = [client(one, user) for user in users[:3]]
        for stomp, body in zip(trio, ("fine 1", "poison", "fine 2"), strict=True):
            stomp.send_json("/app/rooms.alpha", {"body": body, "client_id": body}, receipt=body)
        trio[0].receipt("fine 1")
        trio[2].receipt("fine 2")
        trio[1].until(lambda _f: errors_of(trio[1]), "the refused SEND's error")
        assert [(e["receipt"], e["code"]) for e in errors_of(trio[1])] == [("poison", "invalid")]
        assert "poison" not in trio[1].receipts()
        assert sorted(db.bodies()) == ["fine 1", "fine 2"]
        events = db.rows(
            "SELECT m.body FROM chat_roomevent e JOIN chat_message m ON m.id = e.message_id ORDER BY e.seq"
        )
        assert sorted(b for (b,) in events) == ["fine 1", "fine 2"]
        for stomp in trio:
            assert stomp.close_code is None
            stomp.close()
    finally:
        db.rows("DROP TRIGGER IF EXISTS poison_event ON chat_roomevent")
        db.rows("DROP FUNCTION IF EXISTS poison_event()")


def test_a_message_with_files_binds_them_in_the_batch_and_a_taken_upload_refuses_only_its_message_on_postgres(
    servers, pg
):
    """Uploads bound to their message inside the batch's pipelined transaction. make e2e found every message with
    files refused on PostgreSQL when alone in its batch: the UPDATE's row count is unknown in psycopg's pipeline
    mode until a sync (with others, the unit-by-unit retry outside the pipeline hid it). A message with two
    uploads is stored and announced with both; in a later batch, a message naming an upload that the message
    before it in the same batch took is refused alone."""
    db, users = pg
    room_id = db.rows("SELECT id FROM chat_room WHERE slug = 'alpha'")[0][0]
    uploads = [
        db.rows(
            "INSERT INTO attachments_attachment (owner_id, room_id, file, thumbnail, name, size, content_type, "
            "created) VALUES (%s, %s, %s, '', %s, 12, 'text/plain', now()) RETURNING id",
            users[0].pk, room_id, f"rooms/{room_id}/f{n}.txt", f"notes {n}.txt",
        )[0][0]
        for n in range(3)
    ]  # fmt: skip
    one, _two = servers(CHAT_WRITE_WINDOW_MS="300")  # pipelined SENDs share a batch, in the order they were sent
    alice = client(one, users[0], rooms=("alpha",))
    alice.send_json("/app/rooms.alpha", {"body": "files", "client_id": "files", "attachments": uploads[:2]},
                    receipt="files")  # fmt: skip
    alice.receipt("files", timeout=20)
    assert not errors_of(alice)
    alice.until(lambda _f: ids_on(alice, "alpha"), "the broadcast")
    (announced,) = [json.loads(f.body) for f in alice.messages("/topic/rooms.alpha")]
    assert [a["name"] for a in announced["attachments"]] == ["notes 0.txt", "notes 1.txt"]

    alice.send_json("/app/rooms.alpha", {"body": "more", "client_id": "more", "attachments": uploads[2:]},
                    receipt="more")  # fmt: skip
    alice.send_json("/app/rooms.alpha", {"body": "taken", "client_id": "taken", "attachments": uploads[2:]},
                    receipt="taken")  # fmt: skip
    alice.receipt("more", timeout=20)
    alice.until(lambda _f: errors_of(alice), "the second message's refusal", 20)
    assert [(e["receipt"], e["code"]) for e in errors_of(alice)] == [("taken", "already-attached")]
    assert "taken" not in alice.receipts()
    assert db.bodies() == ["files", "more"]
    first, second = db.room_ids("alpha")
    bound = dict(db.rows("SELECT id, message_id FROM attachments_attachment"))
    assert bound == {uploads[0]: first, uploads[1]: first, uploads[2]: second}
    alice.close()


SLOW_TRIGGER = """
CREATE FUNCTION slow_or_poison() RETURNS trigger AS $$
BEGIN
  IF NEW.body LIKE 'slow%' THEN
    PERFORM pg_sleep(3);
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql
"""


def test_the_writer_process_killed_in_a_batch_leaves_it_unconfirmed_and_the_next_batch_starts_a_new_one(
    daphne_factory, redis_server, postgres_cluster, pg
):
    """CHAT_WRITER_PROCESS: the batch the dead process held is refused as unconfirmed, with no RECEIPT (it may
    or may not have committed: PostgreSQL finishes what it had been sent); the server and its connections stay
    up, the next batch runs in a new process, the SEND resent with its client_id is stored exactly once, and
    /metrics counts every batch, the lost one as failed."""
    db, users = pg
    db.rows(SLOW_TRIGGER)
    db.rows("CREATE TRIGGER slow_or_poison BEFORE INSERT ON chat_message "
            "FOR EACH ROW EXECUTE FUNCTION slow_or_poison()")  # fmt: skip
    server = daphne_factory(REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/0", DATABASE_URL=postgres_cluster.url,
                            CHAT_WRITER_PROCESS="1")  # fmt: skip
    alice = client(server, users[0], rooms=("alpha",))
    alice.send_json("/app/rooms.alpha", {"body": "before", "client_id": "before"}, receipt="before")
    alice.receipt("before")
    first = writer_process_of(server)

    alice.send_json("/app/rooms.alpha", {"body": "slow", "client_id": "slow"}, receipt="slow")
    sleeping = "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND pid <> pg_backend_pid()"
    wait_for(lambda: bool(db.rows(sleeping)), timeout=20, what="the batch to be inside its INSERT")
    os.kill(first, signal.SIGKILL)
    alice.until(lambda _f: errors_of(alice), "the unconfirmed SEND's error", 20)
    (error,) = errors_of(alice)
    assert (error["receipt"], error["code"]) == ("slow", "write-failed")
    assert "could not confirm" in error["detail"]
    assert "slow" not in alice.receipts()

    # The client resends what was not confirmed, with its client_id, then goes on.
    alice.send_json("/app/rooms.alpha", {"body": "slow", "client_id": "slow"}, receipt="slow again")
    alice.send_json("/app/rooms.alpha", {"body": "after", "client_id": "after"}, receipt="after")
    alice.receipt("slow again", timeout=30)
    alice.receipt("after", timeout=30)
    assert writer_process_of(server) != first
    assert db.bodies() == ["before", "slow", "after"]
    alice.until(lambda _f: len(set(ids_on(alice, "alpha"))) >= 3, "three broadcasts")
    assert sorted(set(ids_on(alice, "alpha"))) == db.room_ids("alpha")
    assert alice.close_code is None
    alice.close()
    samples = scrape(server.url)
    assert total(samples, "chat_writer_batch_failures_total") == 1
    stored = total(samples, "chat_writer_batch_units_count") - 1
    assert stored >= 2  # "before", then the resent one and "after" (one batch or two), recorded by the server
    assert total(samples, "chat_writer_phase_seconds_count", phase="commit") == stored  # measured in the child
