"""Edits, deletes and reactions in the chat writer's batches: one transaction, numbered in unit order, all or none."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat import services
from chat.exceptions import NotAllowed
from chat.models import Message, RoomEvent
from chat.writer import MessageChanged, MessageDeleteWrite, MessageEditWrite, MessageStored, ReactionWrite
from tests.chat.test_writer import BOUND, make_writer, write

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def chat(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    general = services.room_create(creator=alice, name="General", slug="general")
    services.room_join(room=general, user=bob)
    first, _ = services.message_create(room=general, author=bob, body="first")
    return {"alice": alice, "bob": bob, "general": general, "first": first}


def stored_events() -> list[tuple[int, str]]:
    return list(RoomEvent.objects.order_by("seq").values_list("seq", "kind"))


async def test_changes_and_messages_share_a_batch_and_take_numbers_in_unit_order(chat):
    published: list = []
    writer = make_writer(published, window=0.2)
    g, a, b, first = chat["general"], chat["alice"], chat["bob"], chat["first"]
    async with asyncio.timeout(BOUND):
        results = await asyncio.gather(
            writer.submit([write(g, a, "second")]),
            writer.submit([MessageEditWrite(room=g, author=b, message_id=first.pk, body="first!")]),
            writer.submit([ReactionWrite(room=g, author=a, message_id=first.pk, emoji="👍")]),
            writer.submit([MessageDeleteWrite(room=g, author=a, message_id=first.pk)]),  # the owner
        )
    assert writer.batches == 1
    stored, edit, react, delete = (events[0] for events in results)
    assert isinstance(stored, MessageStored) and stored.event_seq == 2
    assert [(e.event, e.event_seq) for e in (edit, react, delete)] == [("edit", 3), ("reaction", 4), ("delete", 5)]
    assert all(isinstance(e, MessageChanged) for e in (edit, react, delete))
    # Each body is the message as the batch left it (deleted last): applying any of them gives the final state.
    assert edit.body["deleted"] and react.body == {"id": first.pk, "reactions": []}
    assert await database_sync_to_async(stored_events)() == [
        (1, "created"), (2, "created"), (3, "edited"), (4, "reaction"), (5, "deleted")]  # fmt: skip
    assert [getattr(e, "event_seq", None) for e in published] == [2, 3, 4, 5]


async def test_a_unit_with_a_refused_change_stores_nothing_of_it(chat):
    writer = make_writer(window=0.1)
    g, a, first = chat["general"], chat["alice"], chat["first"]
    unit = [write(g, a, "in a transaction"), MessageEditWrite(room=g, author=a, message_id=first.pk, body="not mine")]
    async with asyncio.timeout(BOUND):
        outcome, later = await asyncio.gather(
            writer.submit(unit), writer.submit([write(g, a, "after")]), return_exceptions=True
        )
    assert isinstance(outcome, NotAllowed)
    bodies = await database_sync_to_async(lambda: list(Message.objects.order_by("id").values_list("body", flat=True)))()
    assert bodies == ["first", "after"]
    assert later[0].event_seq == 2  # no number given to what was refused
