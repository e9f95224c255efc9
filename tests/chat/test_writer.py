"""The chat writer against a real SQLite database: window, size limit, bounded queue, failures, dedupe, order."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from channels.db import database_sync_to_async
from django.db import close_old_connections, connection

from chat import services
from chat.exceptions import ChatError, NotFound
from chat.models import Membership, Message
from chat.writer import (
    ChatWriter,
    MessageRepeated,
    MessageStored,
    MessageWrite,
    NotificationsCreated,
    WriteFailed,
    WriterBusy,
)
from chat.writer.store import messages_store
from notifications.models import Notification

pytestmark = pytest.mark.django_db(transaction=True)
BOUND = 30  # seconds: a writer that waits for what it should not would hit this, never a passing test


@pytest.fixture
def chat(make_user):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    general = services.room_create(creator=alice, name="General", slug="general")
    other = services.room_create(creator=alice, name="Other", slug="other")
    secret = services.room_create(creator=alice, name="Secret", slug="secret", is_private=True)
    return {"alice": alice, "bob": bob, "carol": carol, "general": general, "other": other, "secret": secret}


def store(units):
    close_old_connections()
    try:
        return messages_store(units=units)
    finally:
        close_old_connections()


def make_writer(published: list | None = None, **kwargs) -> ChatWriter:
    options = {"window": 0.005, "batch_max": 100, "queue_limit": 1000, "store": store,
               "publish": published.extend if published is not None else lambda events: None}  # fmt: skip
    options.update(kwargs)
    return ChatWriter(**options)


def write(room, author, body: str, client_id: str | None = None) -> MessageWrite:
    return MessageWrite(room=room, author=author, body=body, client_id=client_id)


def stored_rows() -> list[tuple[int, str, str]]:
    return list(Message.objects.order_by("id").values_list("id", "room__slug", "body"))


rows = database_sync_to_async(stored_rows)


async def test_units_arriving_within_the_window_share_one_batch_and_one_transaction(chat):
    published: list = []
    writer = make_writer(published, window=0.2)
    async with asyncio.timeout(BOUND):
        results = await asyncio.gather(
            *(writer.submit([write(chat["general"], chat["alice"], f"m{i}")]) for i in range(5))
        )
    assert writer.batches == 1
    ids = [events[0].seq for events in results]
    assert ids == sorted(ids) and [r[2] for r in await rows()] == [f"m{i}" for i in range(5)]
    # Chained: each message's prev is the room's message before it, the first one's is 0 (empty room).
    assert [events[0].prev for events in results] == [0, *ids[:-1]]
    assert [e.seq for e in published] == ids  # published (after the commit) before the callers were answered


async def test_the_size_limit_closes_a_batch_before_its_window_ends(chat):
    writer = make_writer(window=3600, batch_max=2)  # only the size limit can start these batches
    async with asyncio.timeout(BOUND):
        await asyncio.gather(*(writer.submit([write(chat["general"], chat["alice"], f"m{i}")]) for i in range(4)))
    assert writer.batches == 2
    assert len(await rows()) == 4


async def test_a_full_queue_refuses_at_once_with_server_busy(chat):
    started, release = threading.Event(), threading.Event()

    def slow_store(units):
        started.set()
        release.wait(BOUND)
        return store(units)

    writer = make_writer(window=0, queue_limit=2, store=slow_store)
    first = asyncio.ensure_future(writer.submit([write(chat["general"], chat["alice"], "in the batch")]))
    assert await asyncio.to_thread(started.wait, BOUND)  # the writer took it into a batch, waiting on `release`
    queued = [asyncio.ensure_future(writer.submit([write(chat["general"], chat["alice"], f"q{i}")])) for i in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(WriterBusy) as refused:
        await writer.submit([write(chat["general"], chat["alice"], "one too many")])
    assert refused.value.code == "server-busy"
    release.set()
    async with asyncio.timeout(BOUND):
        await asyncio.gather(first, *queued)
    assert [r[2] for r in await rows()] == ["in the batch", "q0", "q1"]


async def test_a_database_failure_fails_every_unit_of_the_batch_stores_nothing_and_the_next_batch_succeeds(chat):
    path = connection.settings_dict["NAME"]
    holder = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the database: the batch's BEGIN fails

    def impatient_store(units):
        close_old_connections()
        connection.ensure_connection()
        connection.connection.execute("PRAGMA busy_timeout = 50")
        try:
            return messages_store(units=units)
        finally:
            close_old_connections()

    writer = make_writer(window=0.1, store=impatient_store)
    async with asyncio.timeout(BOUND):
        outcomes = await asyncio.gather(
            *(writer.submit([write(chat["general"], chat["alice"], f"lost {i}")]) for i in range(3)),
            return_exceptions=True,
        )
    assert all(isinstance(o, WriteFailed) and o.code == "write-failed" for o in outcomes), outcomes
    holder.execute("ROLLBACK")
    holder.close()
    async with asyncio.timeout(BOUND):
        await writer.submit([write(chat["general"], chat["alice"], "after")])
    assert [r[2] for r in await rows()] == ["after"]


@pytest.fixture
def poison_trigger(transactional_db):
    """A real constraint the rows of a batch can break: the database refuses bodies containing 'poison'."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TRIGGER no_poison BEFORE INSERT ON chat_message WHEN NEW.body LIKE '%poison%' "
            "BEGIN SELECT RAISE(ABORT, 'poisoned message'); END"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS no_poison")


async def test_a_row_the_database_refuses_fails_alone_and_the_rest_of_the_batch_is_stored(chat, poison_trigger):
    writer = make_writer(window=0.2)
    g, a = chat["general"], chat["alice"]
    async with asyncio.timeout(BOUND):
        outcomes = await asyncio.gather(
            writer.submit([write(g, a, "fine 1")]),
            writer.submit([write(g, a, "poison")]),
            writer.submit([write(g, a, "fine 2"), write(g, a, "poison in a transaction")]),  # all or none
            writer.submit([write(g, a, "fine 3")]),
            return_exceptions=True,
        )
    assert writer.batches == 1
    assert isinstance(outcomes[1], ChatError) and isinstance(outcomes[2], ChatError)
    assert "constraint" in str(outcomes[1])
    assert [r[2] for r in await rows()] == ["fine 1", "fine 3"]
    first, last = outcomes[0][0], outcomes[3][0]
    assert last.prev == first.seq  # the chain skips what was not stored


async def test_a_repeated_client_id_is_stored_once_within_a_batch_and_across_batches(chat):
    published: list = []
    writer = make_writer(published, window=0.2)
    g, a, b = chat["general"], chat["alice"], chat["bob"]
    async with asyncio.timeout(BOUND):
        one, again, bobs = await asyncio.gather(
            writer.submit([write(g, a, "hello", "c-1")]),
            writer.submit([write(g, a, "hello (resent)", "c-1")]),
            writer.submit([write(g, b, "same id, other author", "c-1")]),
        )
        later = await writer.submit([write(g, a, "hello (resent later)", "c-1")])
    assert isinstance(one[0], MessageStored) and isinstance(bobs[0], MessageStored)
    assert isinstance(again[0], MessageRepeated) and isinstance(later[0], MessageRepeated)
    assert again[0].seq == later[0].seq == one[0].seq
    assert later[0].message["body"] == "hello" and later[0].prev == one[0].prev
    assert [r[2] for r in await rows()] == ["hello", "same id, other author"]
    # The repeat is re-announced under the original id (subscribers drop what they already have).
    assert [e.seq for e in published if not isinstance(e, NotificationsCreated)].count(one[0].seq) == 3


async def test_each_rooms_chain_of_ids_is_exact_across_batches(chat):
    writer = make_writer(window=0.05)
    a = chat["alice"]
    async with asyncio.timeout(BOUND):
        for round_ in range(3):
            await asyncio.gather(
                *(writer.submit([write(chat[slug], a, f"{slug} {round_}.{i}")]) for i in range(3)
                  for slug in ("general", "other"))
            )  # fmt: skip
    for slug in ("general", "other"):
        ids = [r[0] for r in await rows() if r[1] == slug]
        assert len(ids) == 9
    # The prev of every stored message is the id before it in its room (what the sequencer relies on).
    events = []
    async with asyncio.timeout(BOUND):
        events = await asyncio.gather(*(writer.submit([write(chat["other"], a, f"x{i}")]) for i in range(3)))
    other_ids = [r[0] for r in await rows() if r[1] == "other"]
    assert [e[0].prev for e in events] == other_ids[-4:-1]


async def test_mentions_in_a_batch_are_written_once_in_its_transaction_and_a_private_room_needs_membership(chat):
    writer = make_writer(window=0.2)
    g, s, a, c = chat["general"], chat["secret"], chat["alice"], chat["carol"]
    async with asyncio.timeout(BOUND):
        outcomes = await asyncio.gather(
            writer.submit([write(g, a, "@bob @carol look", "m-1")]),
            writer.submit([write(g, a, "@bob look again (resent)", "m-1")]),
            writer.submit([write(g, c, "@BOB hi")]),
            writer.submit([write(s, c, "carol is no member here")]),
            return_exceptions=True,
        )
    assert isinstance(outcomes[3], NotFound)
    created = [e for events in outcomes[:3] for e in events if isinstance(e, NotificationsCreated)]
    assert len(created) == 2  # the resent message notifies nobody again

    def check():
        notes = list(Notification.objects.order_by("id").values_list("recipient__username", "kind"))
        assert notes == [("bob", "mention"), ("carol", "mention"), ("bob", "mention")]
        # Carol joined the public room with her first message there; not the private one.
        assert Membership.objects.filter(room=g, user=c).exists()
        assert not Membership.objects.filter(room=s, user=c).exists()

    await database_sync_to_async(check)()


async def test_a_futures_callbacks_run_after_its_batch_was_published_and_refusals_are_turned(chat):
    # submit_nowait hands out the batch's own future (a STOMP SEND's Completion): its done callbacks, the
    # RECEIPT's, run after the broadcast; ``refuse`` turns the unit's ChatError into the SEND's own refusal.
    published: list = []
    writer = make_writer(published, window=0.05)
    seen: list = []
    stored = writer.submit_nowait([write(chat["general"], chat["alice"], "hello")], refuse=lambda exc: None)
    refused = writer.submit_nowait([write(chat["secret"], chat["carol"], "not a member")],
                                   refuse=lambda exc: LookupError(f"refused: {exc.code}"))  # fmt: skip
    for future in (stored, refused):
        future.add_done_callback(lambda _f: seen.append(len(published)))
    async with asyncio.timeout(BOUND):
        await asyncio.wait({stored, refused})
    assert seen == [1, 1]  # both callbacks saw the batch's one MessageStored published
    assert isinstance(stored.result()[0], MessageStored)
    assert isinstance(refused.exception(), LookupError) and str(refused.exception()) == "refused: not-found"


async def test_no_caller_is_left_waiting_when_publishing_or_answering_a_batch_fails(chat):
    def failing_publish(events):
        raise RuntimeError("the broker fell over")

    writer = make_writer(publish=failing_publish)
    async with asyncio.timeout(BOUND):
        events = await writer.submit([write(chat["general"], chat["alice"], "stored anyway")])
    assert isinstance(events[0], MessageStored)  # stored: subscribers get it on their next resume
    broken = make_writer(store=lambda units: [])  # a store that answers no unit (a bug)
    async with asyncio.timeout(BOUND):
        with pytest.raises(WriteFailed):
            await broken.submit([write(chat["general"], chat["alice"], "unconfirmed")])


async def test_the_next_batch_is_stored_while_the_last_one_is_published_and_batches_publish_in_commit_order(chat):
    # The thread must not sit idle while the loop builds a batch's MESSAGEs: the next due batch starts storing
    # before the stored one is published; the publishes still follow the commits, one batch after the other.
    log: list[str] = []
    release, second_started, first_published = threading.Event(), threading.Event(), threading.Event()
    calls = 0

    def ordered_store(units):
        nonlocal calls
        calls += 1
        if calls == 1:
            release.wait(BOUND)  # until the second unit is queued (and due: window 0)
        else:
            second_started.set()
            first_published.wait(BOUND)  # the order of the log below stays deterministic
        result = store(units)
        log.append(f"stored {[w.body for unit in units for w in unit]}")
        return result

    def publish(events):
        if not first_published.is_set():
            log.append(f"the second batch was in the thread before the first was published: {second_started.wait(5)}")
        log.append(f"published {[e.message['body'] for e in events]}")
        first_published.set()

    writer = make_writer(window=0, store=ordered_store, publish=publish)
    g, a = chat["general"], chat["alice"]
    first = writer.submit_nowait([write(g, a, "early")])
    await asyncio.sleep(0.05)  # the first batch is in the thread, waiting on `release`
    second = writer.submit_nowait([write(g, a, "late")])
    release.set()
    async with asyncio.timeout(BOUND):
        await asyncio.wait({first, second})
    assert log == [
        "stored ['early']",
        "the second batch was in the thread before the first was published: True",
        "published ['early']",
        "stored ['late']",
        "published ['late']",
    ]
    assert first.result()[0].seq < second.result()[0].seq


def test_an_empty_batch_stores_nothing(chat):
    assert messages_store(units=[]) == []
    assert stored_rows() == []
