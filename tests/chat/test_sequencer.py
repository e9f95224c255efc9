"""Room order across processes: the sequencer delivers sequenced publications of a key in order, and a
publication keeps its place in the sequence on its way through Redis (``to_wire``/``from_wire``)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stompengine.broker.local import Publication
from stompengine.broker.sequencer import Sequencer
from stompengine.stomp.frames import Escaping

KEY = "/topic/rooms.general"


def message(seq: int, prev: int, key: str = KEY) -> Publication:
    headers = (("destination", key), ("message-id", f"n-{seq}"), ("content-type", "text/plain"))
    return Publication(key, f"n-{seq}", headers, str(seq).encode(), seq=seq, prev=prev)


class Delivered(list):
    def __call__(self, publication: Publication) -> None:
        self.append(publication.seq or publication.body.decode())


async def test_a_message_waits_for_its_predecessor_then_both_go_out_in_order():
    delivered = Delivered()
    sequencer = Sequencer(delivered)
    sequencer.offer(message(9, 8))  # the first this process sees goes out at once
    sequencer.offer(message(11, 10))
    sequencer.offer(message(12, 11))
    assert delivered == [9] and sequencer.held(KEY) == 2
    sequencer.offer(message(10, 9))
    assert delivered == [9, 10, 11, 12] and sequencer.held(KEY) == 0


async def test_a_predecessor_that_never_comes_holds_its_successor_only_for_the_wait():
    delivered = Delivered()
    sequencer = Sequencer(delivered, wait=0.05)
    sequencer.offer(message(9, 8))
    sequencer.offer(message(12, 11))
    sequencer.offer(message(11, 10))
    await asyncio.sleep(0.2)
    assert delivered == [9, 11, 12]
    sequencer.offer(message(13, 12))  # and the sequence carries on from there
    assert delivered == [9, 11, 12, 13]


async def test_repeats_unsequenced_messages_and_other_keys_are_never_held():
    delivered = Delivered()
    sequencer = Sequencer(delivered)
    sequencer.offer(message(5, 4))
    sequencer.offer(message(7, 6))  # held: 6 is missing
    sequencer.offer(message(3, 2))  # a repeat (announced again after a retry)
    sequencer.offer(Publication(KEY, "x", (), b"typing", seq=0, prev=0))
    sequencer.offer(message(1, 0, key="/topic/rooms.other"))
    assert delivered == [5, 3, "typing", 1]
    assert sequencer.held(KEY) == 1


async def test_forget_drops_what_was_held_and_known():
    delivered = Delivered()
    sequencer = Sequencer(delivered, wait=0.05)
    sequencer.offer(message(5, 4))
    sequencer.offer(message(7, 6))
    sequencer.forget(KEY)  # the last local subscriber left
    await asyncio.sleep(0.1)
    sequencer.offer(message(20, 19))  # a new subscriber: the first message goes out at once
    assert delivered == [5, 20]


class Store:
    """A repair that answers from a dict of stored numbers, counting its calls."""

    def __init__(self, stored: dict[int, Publication], *, fail: bool = False, delay: float = 0.0) -> None:
        self.stored, self.fail, self.delay, self.asked = stored, fail, delay, []

    async def __call__(self, key: str, after: int, until: int) -> list[Publication]:
        self.asked.append((after, until))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("the database is away")
        return [p for seq, p in self.stored.items() if after < seq <= until]


async def test_a_predecessor_that_never_comes_is_read_from_the_store_and_delivered_in_its_place():
    delivered = Delivered()
    store = Store({10: message(10, 9), 11: message(11, 10)})
    sequencer = Sequencer(delivered, wait=0.05, repair=store)
    sequencer.offer(message(9, 8))
    sequencer.offer(message(12, 11))  # 10 and 11 were committed, then their publisher died
    sequencer.offer(message(13, 12))
    await asyncio.sleep(0.2)
    assert delivered == [9, 10, 11, 12, 13] and store.asked == [(9, 11)]
    sequencer.offer(message(14, 13))
    assert delivered[-1] == 14 and sequencer.held(KEY) == 0


async def test_numbers_the_store_lacks_are_passed_over_and_a_later_gap_waits_on_its_own():
    delivered = Delivered()
    store = Store({})  # removed since (a cascade): nothing to show
    sequencer = Sequencer(delivered, wait=0.05, repair=store)
    sequencer.offer(message(9, 8))
    sequencer.offer(message(11, 10))
    sequencer.offer(message(14, 13))  # a second gap: 12 and 13
    await asyncio.sleep(0.03)
    sequencer.offer(message(13, 12))  # 13 comes live while the first gap waits
    await asyncio.sleep(0.3)
    assert delivered == [9, 11, 13, 14]
    assert store.asked == [(9, 10), (11, 12)]


async def test_a_failing_store_delivers_what_was_held_and_a_late_live_one_is_not_sent_twice():
    delivered = Delivered()
    sequencer = Sequencer(delivered, wait=0.05, repair=Store({}, fail=True))
    sequencer.offer(message(9, 8))
    sequencer.offer(message(11, 10))
    await asyncio.sleep(0.2)
    assert delivered == [9, 11]
    slow = Store({12: message(12, 11)}, delay=0.1)
    sequencer = Sequencer(delivered := Delivered(), wait=0.05, repair=slow)
    sequencer.offer(message(11, 10))
    sequencer.offer(message(13, 12))
    await asyncio.sleep(0.08)  # the store is being read ...
    sequencer.offer(message(12, 11))  # ... when the missing one arrives after all
    sequencer.offer(message(15, 14))  # held while the read runs: no second timer
    await asyncio.sleep(0.1)
    assert delivered == [11, 12, 13] and slow.asked == [(11, 12)]
    sequencer.forget(KEY)


@settings(max_examples=200, deadline=None)
@given(order=st.permutations(range(101, 113)))
def test_any_arrival_order_is_delivered_in_sequence_order_exactly_once(order):
    async def run() -> list:
        delivered = Delivered()
        sequencer = Sequencer(delivered)
        sequencer.offer(message(100, 99))
        for seq in order:
            sequencer.offer(message(seq, seq - 1))
        assert sequencer.held(KEY) == 0  # the last arrival completed the sequence: nothing waits
        return delivered

    assert asyncio.run(run()) == list(range(100, 113))


def test_the_sequence_survives_the_wire_to_another_process():
    original = message(11, 10)
    again = Publication.from_wire(KEY, original.to_wire())
    assert (again.message_id, again.seq, again.prev, again.body) == ("n-11", 11, 10, b"11")
    assert again.tail(Escaping.V12) == original.tail(Escaping.V12)
    plain = Publication(KEY, "n-1", original.headers, b"x")
    assert Publication.from_wire(KEY, plain.to_wire()).seq == 0


@pytest.mark.django_db(transaction=True)
async def test_a_made_up_since_id_never_moves_the_replay_boundary_past_the_newest_message(make_user):
    from channels.db import database_sync_to_async

    from chat import services
    from chat.stomp_destinations import _replay_read

    @database_sync_to_async
    def room_with_messages() -> list[int]:
        alice = make_user("alice")
        room = services.room_create(creator=alice, name="General", slug="general")
        return [services.message_create(room=room, author=alice, body=f"m{i}")[0].pk for i in range(3)]

    ids = await room_with_messages()
    assert (await _replay_read("general", 10_000_000, 50))[:3] == ([], False, ids[-1])
    messages, truncated, reached, _ = await _replay_read("general", ids[0], 50)
    assert ([m["id"] for m in messages], truncated, reached) == (ids[1:], False, ids[-1])
