"""The batched write path with real daphne processes sharing Redis and the database (SQLite, or PostgreSQL
through ``live_database``): many senders, order and resume, repeats, STOMP transactions, failing batches."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from django.db import connection

from chat import services
from chat.models import Message, Room
from tests.conftest import access_token_for, wait_for
from tests.reliability.live_stomp import LiveStomp

pytestmark = pytest.mark.live
ERRORS = "/user/queue/errors"
ROOMS = ("alpha", "beta", "gamma")


def topic(slug: str) -> str:
    return f"/topic/rooms.{slug}"


def client(server, user, *, rooms: tuple[str, ...] = (), errors: bool = True, since: int | None = None) -> LiveStomp:
    stomp = LiveStomp.connect(f"{server.ws_url}/ws", access_token_for(user))
    subscriptions = [(f"r-{slug}", topic(slug)) for slug in rooms] + ([("errors", ERRORS)] if errors else [])
    for sub_id, destination in subscriptions:
        headers = {"since-id": str(since)} if since is not None and destination != ERRORS else {}
        stomp.send("SUBSCRIBE", id=sub_id, destination=destination, receipt=f"sub-{sub_id}", **headers)
        stomp.receipt(f"sub-{sub_id}")
    return stomp


def ids_on(stomp: LiveStomp, slug: str) -> list[int]:
    return [json.loads(f.body)["id"] for f in stomp.messages(topic(slug))]


def errors_of(stomp: LiveStomp) -> list[dict]:
    return [json.loads(f.body) for f in stomp.messages(ERRORS)]


def burst(senders: list[LiveStomp], per_sender: int) -> None:
    """Every sender SENDs ``per_sender`` messages round robin over ROOMS, all in flight at once (pipelined),
    then every one of them is RECEIPTed and none refused."""
    for n in range(per_sender):
        for i, sender in enumerate(senders):
            slug = ROOMS[(n + i) % len(ROOMS)]
            sender.send_json(f"/app/rooms.{slug}", {"body": f"{i}:{n}", "client_id": f"c{i}-{n}"}, receipt=f"c{n}")
    for sender in senders:
        for n in range(per_sender):
            sender.receipt(f"c{n}", timeout=60)
        assert not errors_of(sender)


def room_ids(slug: str) -> list[int]:
    return list(Message.objects.filter(room__slug=slug).order_by("id").values_list("id", flat=True))


@pytest.fixture
def crowd(make_user):
    users = [make_user(f"user{i}") for i in range(6)]
    for slug in ROOMS:
        room = services.room_create(creator=users[0], name=slug.title(), slug=slug)
        for user in users[1:]:
            services.room_join(room=room, user=user)
    return users


@pytest.fixture
def servers(daphne_factory, redis_server) -> Callable[..., tuple]:
    def start(**env: str):
        url = f"redis://127.0.0.1:{redis_server.port}/0"
        return daphne_factory(REDIS_URL=url, **env), daphne_factory(REDIS_URL=url, **env)

    return start


def test_many_senders_on_two_processes_every_receipt_stored_each_room_once_in_id_order_and_resume_exact(servers, crowd):
    one, two = servers()
    watchers = [client(server, crowd[0], rooms=ROOMS) for server in (one, two)]
    senders = [client((one, two)[i % 2], user) for i, user in enumerate(crowd)]
    per_sender = 30
    burst(senders, per_sender)

    rows = list(Message.objects.values_list("author__username", "client_id"))
    assert len(rows) == len(set(rows)) == per_sender * len(senders)  # every RECEIPTed message stored once
    for slug in ROOMS:
        expected = room_ids(slug)
        for watcher in watchers:  # each subscriber, on either process, sees each room's messages once, in order
            watcher.until(lambda _f, w=watcher, s=slug, e=expected: len(ids_on(w, s)) >= len(e), f"{slug}", 30)
            assert ids_on(watcher, slug) == expected
    # since-id resume from any point: exactly the messages after it, in order.
    expected = room_ids("beta")
    for since in (0, expected[0], expected[len(expected) // 2], expected[-1]):
        resumed = client(two, crowd[3], rooms=("beta",), errors=False, since=since)
        wanted = [i for i in expected if i > since]
        if wanted:
            resumed.until(lambda _f, r=resumed, w=wanted: len(ids_on(r, "beta")) >= len(w), f"resume {since}", 20)
        assert ids_on(resumed, "beta") == wanted
        resumed.close()
    for stomp in (*watchers, *senders):
        stomp.close()


def test_a_client_id_repeated_within_a_batch_and_in_a_later_batch_is_stored_once_under_one_id(servers, crowd):
    one, _two = servers(CHAT_WRITE_WINDOW_MS="300")  # a long window: the three resends share one batch
    # A client resending over new connections while the first SENDs are still in flight (one connection's
    # frames are handled in order, so a batch gathers the SENDs of several connections).
    tabs = [client(one, crowd[0], rooms=("alpha",)) for _ in range(3)]
    for n, tab in enumerate(tabs):
        tab.send_json("/app/rooms.alpha", {"body": f"hello {n}", "client_id": "same"}, receipt=f"r{n}")
    for n, tab in enumerate(tabs):
        tab.receipt(f"r{n}")
    tabs[0].send_json("/app/rooms.alpha", {"body": "hello later", "client_id": "same"}, receipt="later")
    tabs[0].receipt("later")
    (stored,) = Message.objects.filter(client_id="same")
    assert stored.body in {"hello 0", "hello 1", "hello 2"}
    tabs[0].until(lambda _f: len(ids_on(tabs[0], "alpha")) >= 4, "four announcements")
    assert set(ids_on(tabs[0], "alpha")) == {stored.pk}  # re-announced under its one id (clients dedupe by id)
    for tab in tabs:
        assert not errors_of(tab)
        tab.close()


def test_a_stomp_transaction_with_an_invalid_send_stores_nothing_and_a_valid_one_stores_all(daphne_server, crowd):
    alice = client(daphne_server, crowd[0], rooms=("alpha",))
    alice.send("BEGIN", transaction="t1")
    for body in ("first", "", "third"):
        alice.send("SEND", json.dumps({"body": body}), destination="/app/rooms.alpha", transaction="t1",
                   **{"content-type": "application/json"})  # fmt: skip
    alice.send("COMMIT", transaction="t1", receipt="commit-1")
    error = alice.until(lambda f: f.get("destination") == ERRORS, "the COMMIT's error")
    assert json.loads(error.body)["receipt"] == "commit-1" and json.loads(error.body)["code"] == "invalid"
    alice.send("BEGIN", transaction="t2")
    for body in ("one", "two", "three"):
        alice.send("SEND", json.dumps({"body": body}), destination="/app/rooms.alpha", transaction="t2",
                   **{"content-type": "application/json"})  # fmt: skip
    alice.send("COMMIT", transaction="t2", receipt="commit-2")
    alice.receipt("commit-2")  # the connection stayed usable
    assert "commit-1" not in alice.receipts()
    assert list(Message.objects.order_by("id").values_list("body", flat=True)) == ["one", "two", "three"]
    alice.close()


@pytest.fixture
def poison_trigger(live_db):
    """A real constraint a row of a batch can break: the database refuses bodies containing 'poison'."""
    sql = {
        "sqlite": [
            "CREATE TRIGGER no_poison BEFORE INSERT ON chat_message WHEN NEW.body LIKE '%poison%' "
            "BEGIN SELECT RAISE(ABORT, 'poisoned message'); END"
        ],
        "postgresql": [
            "CREATE FUNCTION no_poison() RETURNS trigger AS $$ BEGIN IF NEW.body LIKE '%poison%' THEN "
            "RAISE EXCEPTION 'poisoned message' USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$ "
            "LANGUAGE plpgsql",
            "CREATE TRIGGER no_poison BEFORE INSERT ON chat_message FOR EACH ROW EXECUTE FUNCTION no_poison()",
        ],
    }[connection.vendor]
    with connection.cursor() as cursor:
        for statement in sql:
            cursor.execute(statement)
    yield
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TRIGGER IF EXISTS no_poison" + (" ON chat_message" if connection.vendor != "sqlite" else "")
        )
        if connection.vendor != "sqlite":
            cursor.execute("DROP FUNCTION IF EXISTS no_poison()")


def test_a_row_the_database_refuses_is_answered_alone_and_the_rest_of_its_batch_is_stored(
    servers, crowd, poison_trigger
):
    one, _two = servers(CHAT_WRITE_WINDOW_MS="300")  # the three SENDs (three connections) share one batch
    trio = [client(one, user, rooms=("alpha",)) for user in crowd[:3]]
    for stomp, body in zip(trio, ("fine 1", "poison", "fine 2"), strict=True):
        stomp.send_json("/app/rooms.alpha", {"body": body, "client_id": body}, receipt=body)
    trio[0].receipt("fine 1")
    trio[2].receipt("fine 2")
    error = trio[1].until(lambda f: f.get("destination") == ERRORS, "the refused row's error")
    assert json.loads(error.body) == {**json.loads(error.body), "receipt": "poison", "client_id": "poison",
                                      "code": "invalid"}  # fmt: skip
    assert "poison" not in trio[1].receipts()
    assert sorted(Message.objects.values_list("body", flat=True)) == ["fine 1", "fine 2"]
    trio[1].send_json("/app/rooms.alpha", {"body": "fine 3"}, receipt="fine 3")
    trio[1].receipt("fine 3")  # later batches succeed, on the same connection
    assert sorted(Message.objects.values_list("body", flat=True)) == ["fine 1", "fine 2", "fine 3"]
    trio[1].until(lambda _f: len(ids_on(trio[1], "alpha")) >= 3, "three broadcasts")
    assert ids_on(trio[1], "alpha") == room_ids("alpha")
    for stomp in trio:
        stomp.close()


def test_a_direct_message_goes_through_the_writer_to_the_other_members_queue(daphne_server, crowd):
    alice, bob = crowd[0], crowd[1]
    receiver = client(daphne_server, bob, errors=False)
    receiver.send("SUBSCRIBE", id="dm", destination="/user/queue/dm", receipt="sub-dm")
    receiver.receipt("sub-dm")
    sender = client(daphne_server, alice)
    sender.send_json(f"/app/dm.{bob.username}", {"body": "psst", "client_id": "dm-1"}, receipt="dm-1")
    sender.receipt("dm-1")
    frame = receiver.until(lambda f: f.get("destination") == "/user/queue/dm", "the DM")
    room = Room.objects.get(kind=Room.Kind.DIRECT)
    assert json.loads(frame.body) == {**json.loads(frame.body), "body": "psst", "room": room.slug, "author": "user0"}
    for stomp in (receiver, sender):
        stomp.close()


def test_sigkill_of_a_worker_in_the_middle_of_a_burst_loses_nothing_that_got_a_receipt(servers, crowd):
    one, two = servers()
    senders = [client(one, user) for user in crowd]  # every sender on the worker that will die
    watcher = client(two, crowd[0], rooms=ROOMS)
    per_sender = 60
    for n in range(per_sender):
        for i, sender in enumerate(senders):
            slug = ROOMS[(n + i) % len(ROOMS)]
            sender.send_json(f"/app/rooms.{slug}", {"body": f"{i}:{n}", "client_id": f"c{i}-{n}"}, receipt=f"c{i}-{n}")
    senders[0].until(lambda _f: len(senders[0].receipts()) >= 5, "the first receipts")
    one.kill()  # SIGKILL while batches are in flight
    receipted: set[tuple[str, str]] = set()
    for i, sender in enumerate(senders):
        sender.wait_closed(timeout=15)
        receipted |= {(crowd[i].username, r) for r in sender.receipts() if r.startswith("c")}
    assert receipted, "no RECEIPT arrived before the kill"
    stored = set(Message.objects.values_list("author__username", "client_id"))
    assert receipted <= stored  # a RECEIPT always means "in the database"
    # What the watcher on the surviving worker got is stored, once each, in id order (a message committed
    # just before the kill may never be announced: its sender retries it under its client_id).
    with contextlib.suppress(AssertionError):  # read what was published for 2 s: not a timing assertion
        watcher.until(lambda _f: False, "nothing (draining)", 2)
    for slug in ROOMS:
        got = ids_on(watcher, slug)
        assert got == sorted(set(got)) and set(got) <= set(room_ids(slug))
    watcher.close()


@pytest.mark.parametrize("server_kind", ["daphne", "uvicorn"])
def test_a_rest_post_goes_through_the_writer_and_is_announced_before_its_response(daphne_factory, crowd, server_kind):
    server = daphne_factory(server=server_kind)
    watcher = client(server, crowd[1], rooms=("alpha",), errors=False)
    headers = {"Authorization": f"Bearer {access_token_for(crowd[0])}"}
    url = f"{server.url}/api/rooms/alpha/messages/"
    first = httpx.post(url, json={"body": "via REST", "client_id": "rest-1"}, headers=headers, timeout=10)
    again = httpx.post(url, json={"body": "via REST (resent)", "client_id": "rest-1"}, headers=headers, timeout=10)
    empty = httpx.post(url, json={"body": "  "}, headers=headers, timeout=10)
    assert (first.status_code, again.status_code, empty.status_code) == (201, 200, 400)
    assert first.json()["id"] == again.json()["id"] and again.json()["body"] == "via REST"
    assert list(Message.objects.values_list("body", flat=True)) == ["via REST"]
    watcher.until(lambda _f: len(ids_on(watcher, "alpha")) >= 2, "the message and its re-announcement")
    assert set(ids_on(watcher, "alpha")) == {first.json()["id"]}
    watcher.close()


def test_the_writer_process_outlives_a_stop_signal_to_its_group_and_ends_with_its_server(daphne_factory, crowd):
    """CHAT_WRITER_PROCESS=1: systemd's stop (SIGTERM to the whole group) or a terminal's Ctrl-C reaches the
    writer process too; it keeps serving while the server drains and ends once the server has exited."""
    server = daphne_factory(CHAT_WRITER_PROCESS="1")
    alice = client(server, crowd[0], rooms=("alpha",))
    alice.send_json("/app/rooms.alpha", {"body": "one", "client_id": "one"}, receipt="one")
    alice.receipt("one", timeout=30)
    writer = writer_process_of(server)
    os.kill(writer, signal.SIGTERM)
    os.kill(writer, signal.SIGINT)
    alice.send_json("/app/rooms.alpha", {"body": "two", "client_id": "two"}, receipt="two")
    alice.receipt("two", timeout=30)
    assert room_ids("alpha") == sorted(room_ids("alpha")) and len(room_ids("alpha")) == 2
    assert _state(writer) in (b"S", b"R")  # the same writer process stored "two": the signals did not end it
    alice.close()
    server.stop()
    wait_for(lambda: not Path(f"/proc/{writer}").exists() or b"Z" in _state(writer), timeout=20,
             what="the writer process to end with its server")  # fmt: skip


def writer_process_of(server) -> int:
    """The pid of the server's chat writer process (its one child started by multiprocessing's spawn)."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    found = [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(found) == 1, found
    return found[0]


def _state(pid: int) -> bytes:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return stat[stat.rindex(b")") + 2 :][:1]
