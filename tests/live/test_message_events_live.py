"""Issue 20 over STOMP on real daphne processes: edit, delete, react and reply, their refusals, the ``event`` and
``event-seq`` headers, and resuming (``since-seq``, and ``since-id`` for older clients) after changes made
while a client was away, on two processes sharing Redis."""

from __future__ import annotations

import itertools
import json

import pytest

from chat import services
from chat.models import Message
from tests.conftest import access_token_for
from tests.reliability.live_stomp import LiveStomp

pytestmark = pytest.mark.live
ERRORS = "/user/queue/errors"
TOPIC = "/topic/rooms.general"
_receipts = itertools.count(1)


@pytest.fixture
def people(make_user):
    alice, bob, carol, dave = (make_user(n) for n in ("alice", "bob", "carol", "dave"))
    general = services.room_create(creator=alice, name="General", slug="general")
    services.room_create(creator=alice, name="Other", slug="other")
    services.room_create(creator=alice, name="Secret", slug="secret", is_private=True)
    for user in (bob, carol):
        services.room_join(room=general, user=user)
    return {"alice": alice, "bob": bob, "carol": carol, "dave": dave}


def client(server, user, *subscriptions: tuple[str, dict[str, str]]) -> LiveStomp:
    stomp = LiveStomp.connect(f"{server.ws_url}/ws", access_token_for(user))
    for n, (destination, headers) in enumerate([(ERRORS, {}), *subscriptions]):
        stomp.send("SUBSCRIBE", id=f"s{n}", destination=destination, receipt=f"sub-{n}", **headers)
        stomp.receipt(f"sub-{n}")
    return stomp


def answer(stomp: LiveStomp, destination: str, payload: dict) -> tuple[str, object]:
    """SEND with a receipt and wait for its answer: the RECEIPT, or its refusal on /user/queue/errors."""
    receipt = f"r{next(_receipts)}"
    stomp.send_json(destination, payload, receipt=receipt)
    frame = stomp.until(
        lambda f: f.get("receipt-id") == receipt or (f.get("destination") == ERRORS and receipt in f.body.decode()),
        f"the answer to {destination}",
    )
    return receipt, frame


def act(stomp: LiveStomp, destination: str, payload: dict) -> dict:
    """SEND and wait for its RECEIPT (stored and broadcast), asserting it was not refused."""
    _, frame = answer(stomp, destination, payload)
    assert frame.command == "RECEIPT", frame.body
    return payload


def refused(stomp: LiveStomp, destination: str, payload: dict) -> str:
    """SEND and wait for its refusal on /user/queue/errors; returns the code (and checks no RECEIPT came)."""
    receipt, frame = answer(stomp, destination, payload)
    assert frame.command == "MESSAGE", f"{destination} {payload} was accepted"
    body = json.loads(frame.body)
    assert body["receipt"] == receipt
    return body["code"]


def quiet(stomp: LiveStomp, seconds: float) -> None:
    """Read whatever arrives within ``seconds`` (to check that nothing more comes)."""
    with pytest.raises(AssertionError, match="timed out"):
        stomp.until(lambda f: False, "nothing", timeout=seconds)


def room_events(stomp: LiveStomp, topic: str = TOPIC) -> list[tuple[str, int, dict]]:
    return [(f.get("event"), int(f.get("event-seq") or 0), json.loads(f.body)) for f in stomp.messages(topic)]


def wait_events(stomp: LiveStomp, count: int, topic: str = TOPIC) -> list[tuple[str, int, dict]]:
    stomp.until(lambda f: len(stomp.messages(topic)) >= count, f"{count} events on {topic}")
    return room_events(stomp, topic)


def test_edit_delete_react_and_reply_are_stored_then_broadcast_with_event_and_event_seq(daphne_factory, people):
    server = daphne_factory()
    bob = client(server, people["bob"], (TOPIC, {}))
    carol = client(server, people["carol"], (TOPIC, {}))
    act(bob, "/app/rooms.general", {"body": "helo @carol", "client_id": "b-1"})
    (_, _, first), *_ = wait_events(bob, 1)
    act(carol, "/app/rooms.general", {"body": "hi bob", "reply_to": first["id"]})
    act(bob, "/app/rooms.general.edit", {"id": first["id"], "body": "hello @carol"})
    act(carol, "/app/rooms.general.react", {"id": first["id"], "emoji": "👍"})
    act(bob, "/app/rooms.general.react", {"id": first["id"], "emoji": "👍"})
    act(carol, "/app/rooms.general.react", {"id": first["id"], "emoji": "👍"})  # toggled off again
    seen = wait_events(carol, 6)
    reply_id = seen[1][2]["id"]
    act(carol, "/app/rooms.general.delete", {"id": reply_id})
    seen = wait_events(bob, 7)
    assert [(e, s) for e, s, _ in seen] == [("message", 1), ("message", 2), ("edit", 3), ("reaction", 4),
                                            ("reaction", 5), ("reaction", 6), ("delete", 7)]  # fmt: skip
    assert room_events(carol) == seen  # everyone sees one order
    message, reply, edit, react1, react2, react3, delete = (body for _, _, body in seen)
    assert message["edited"] is None and message["deleted"] is False and message["reactions"] == []
    assert reply["reply_to"] == {"id": first["id"], "author": "bob", "excerpt": "helo @carol"}
    assert edit["id"] == first["id"] and edit["body"] == "hello @carol" and edit["edited"]
    assert react1 == {"id": first["id"], "reactions": [{"emoji": "👍", "count": 1, "users": ["carol"]}]}
    assert react2["reactions"] == [{"emoji": "👍", "count": 2, "users": ["carol", "bob"]}]
    assert react3["reactions"] == [{"emoji": "👍", "count": 1, "users": ["bob"]}]
    assert delete == {**delete, "id": reply_id, "deleted": True, "body": "", "attachments": []}
    assert all(f.get("message-id") for f in bob.messages(TOPIC))  # the STOMP message-id is still there
    for stomp in (bob, carol):
        stomp.close()


def test_every_refusal_over_stomp_comes_on_the_error_queue_without_a_receipt(daphne_factory, people):
    server = daphne_factory()
    bob = client(server, people["bob"], (TOPIC, {}))
    carol = client(server, people["carol"], (TOPIC, {}))
    dave = client(server, people["dave"])
    alice = client(server, people["alice"])
    act(bob, "/app/rooms.general", {"body": "bob's"})
    act(alice, "/app/rooms.other", {"body": "elsewhere"})
    act(alice, "/app/rooms.secret", {"body": "members only"})
    bobs = Message.objects.get(body="bob's").pk
    elsewhere = Message.objects.get(body="elsewhere").pk
    secret = Message.objects.get(body="members only").pk
    cases = [
        (carol, "/app/rooms.general.edit", {"id": bobs, "body": "mine"}, "forbidden"),  # another user's
        (carol, "/app/rooms.general.delete", {"id": bobs}, "forbidden"),
        (dave, "/app/rooms.general.react", {"id": bobs, "emoji": "👍"}, "forbidden"),  # not a member
        (dave, "/app/rooms.secret.react", {"id": secret, "emoji": "👍"}, "not-found"),  # private, not a member
        (dave, "/app/rooms.secret.edit", {"id": secret, "body": "x"}, "not-found"),
        (dave, "/app/rooms.secret", {"body": "x", "reply_to": secret}, "not-found"),
        (bob, "/app/rooms.general.edit", {"id": 999_999, "body": "x"}, "not-found"),  # unknown
        (bob, "/app/rooms.general.delete", {"id": 999_999}, "not-found"),
        (bob, "/app/rooms.general.react", {"id": 999_999, "emoji": "👍"}, "not-found"),
        (alice, "/app/rooms.general.delete", {"id": elsewhere}, "not-found"),  # a message of another room
        (alice, "/app/rooms.general.react", {"id": elsewhere, "emoji": "👍"}, "not-found"),
        (bob, "/app/rooms.general", {"body": "re", "reply_to": elsewhere}, "not-found"),
        (bob, "/app/rooms.general.react", {"id": bobs, "emoji": "ok"}, "invalid"),  # not an emoji
        (bob, "/app/rooms.general.react", {"id": bobs, "emoji": "👍👍"}, "invalid"),  # two of them
        (bob, "/app/rooms.general.edit", {"id": bobs, "body": ""}, "invalid"),
        (bob, "/app/rooms.general.edit", {"id": "x", "body": "y"}, "invalid"),
        (bob, "/app/rooms.general", {"body": "re", "reply_to": "x"}, "invalid"),
    ]
    codes = [refused(who, destination, payload) for who, destination, payload, _ in cases]
    assert codes == [code for *_, code in cases]
    for emoji in (chr(0x1F600 + i) for i in range(20)):
        act(carol, "/app/rooms.general.react", {"id": bobs, "emoji": emoji})
    assert refused(bob, "/app/rooms.general.react", {"id": bobs, "emoji": "🎉"}) == "invalid"  # a 21st distinct
    # Nothing refused was stored or announced: bob's message, then the 20 reactions only.
    events = wait_events(bob, 21)
    assert [e for e, _, _ in events] == ["message"] + ["reaction"] * 20 and len(bob.messages(TOPIC)) == 21
    assert Message.objects.get(pk=bobs).body == "bob's"
    for stomp in (bob, carol, dave, alice):
        stomp.close()


def test_edits_and_reactions_spend_the_stomp_send_budget(daphne_factory, people):
    server = daphne_factory(STOMP_USER_SEND_RATE="0.01", STOMP_USER_SEND_BURST="4")
    bob = client(server, people["bob"])
    act(bob, "/app/rooms.general", {"body": "one"})
    message = Message.objects.get(body="one").pk
    act(bob, "/app/rooms.general.edit", {"id": message, "body": "two"})
    act(bob, "/app/rooms.general.react", {"id": message, "emoji": "👍"})
    act(bob, "/app/rooms.general.react", {"id": message, "emoji": "👍"})
    assert refused(bob, "/app/rooms.general.edit", {"id": message, "body": "three"}) == "rate-limited"
    assert refused(bob, "/app/rooms.general.react", {"id": message, "emoji": "👍"}) == "rate-limited"
    bob.close()


def _changes_while_away(alice: LiveStomp, carol: LiveStomp, ids: list[int]) -> None:
    """Edits, deletes, reactions and a new message, made on the other process."""
    act(alice, "/app/rooms.general.edit", {"id": ids[0], "body": "first, edited"})
    act(carol, "/app/rooms.general.react", {"id": ids[1], "emoji": "🎉"})
    act(alice, "/app/rooms.general.delete", {"id": ids[2]})  # the owner deletes carol's message
    act(carol, "/app/rooms.general", {"body": "new while away", "reply_to": ids[0]})
    act(carol, "/app/rooms.general.react", {"id": ids[0], "emoji": "👀"})


def _away_while_others_change(redis_server, daphne_factory, people):
    """Two processes sharing Redis; bob (on the second) sees three messages (events 1-3) and leaves, then
    alice and carol (on the first) make five changes (events 4-8). Returns both servers, alice, carol and
    the three message ids."""
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    one, two = daphne_factory(REDIS_URL=url), daphne_factory(REDIS_URL=url)
    alice = client(one, people["alice"], (TOPIC, {}))
    carol = client(one, people["carol"], (TOPIC, {}))
    bob = client(two, people["bob"], (TOPIC, {}))
    for n, who in enumerate((alice, bob, carol)):
        act(who, "/app/rooms.general", {"body": f"message {n}"})
    before = wait_events(bob, 3)
    assert [s for _, s, _ in before] == [1, 2, 3]
    bob.close()
    ids = [body["id"] for _, _, body in before]
    _changes_while_away(alice, carol, ids)
    wait_events(alice, 8)
    return one, two, alice, carol, ids


def test_since_seq_replays_every_change_made_while_away_on_another_process_then_goes_live(
    redis_server, daphne_factory, people
):
    one, two, alice, carol, ids = _away_while_others_change(redis_server, daphne_factory, people)
    last_seen = 3

    back = client(two, people["bob"], (TOPIC, {"since-seq": str(last_seen)}))
    replayed = wait_events(back, 5)
    assert [(e, s) for e, s, _ in replayed] == [("edit", 4), ("reaction", 5), ("delete", 6), ("message", 7),
                                                ("reaction", 8)]  # fmt: skip
    edit, reaction, delete, message, reaction2 = (body for _, _, body in replayed)
    assert edit["id"] == ids[0] and edit["body"] == "first, edited" and edit["edited"]
    assert reaction == {"id": ids[1], "reactions": [{"emoji": "🎉", "count": 1, "users": ["carol"]}]}
    assert delete["id"] == ids[2] and delete["deleted"] and delete["body"] == ""
    assert message["body"] == "new while away" and message["reply_to"]["id"] == ids[0]
    assert reaction2["id"] == ids[0] and reaction2["reactions"][0]["emoji"] == "👀"
    # Then live, from the other process, with no gap and no duplicate.
    act(alice, "/app/rooms.general.edit", {"id": ids[0], "body": "edited again"})
    live = wait_events(back, 6)
    assert [(e, s) for e, s, _ in live][5:] == [("edit", 9)] and live[5][2]["body"] == "edited again"
    assert [s for _, s, _ in room_events(back)] == list(range(4, 10))
    # Resuming from 0 replays the whole stream; a made-up number far ahead hides nothing to come.
    everything = client(one, people["carol"], (TOPIC, {"since-seq": "0"}))
    assert [s for _, s, _ in wait_events(everything, 9)] == list(range(1, 10))
    ahead = client(one, people["carol"], (TOPIC, {"since-seq": "1000"}))
    act(carol, "/app/rooms.general.react", {"id": ids[0], "emoji": "👀"})
    assert [(e, s) for e, s, _ in wait_events(ahead, 1)] == [("reaction", 10)]
    for stomp in (alice, carol, back, everything, ahead):
        stomp.close()


def test_an_old_client_resuming_by_since_id_gets_the_messages_after_it_in_their_current_state(
    redis_server, daphne_factory, people
):
    _, two, alice, carol, ids = _away_while_others_change(redis_server, daphne_factory, people)

    # Resuming after the first message: the two after it as they are now (carol's deleted), the new one.
    back = client(two, people["bob"], (TOPIC, {"since-id": str(ids[0])}))
    replayed = wait_events(back, 3)
    bodies = [body for _, _, body in replayed]
    assert [b["id"] for b in bodies[:2]] == ids[1:]
    assert bodies[0]["reactions"][0]["emoji"] == "🎉" and bodies[1]["deleted"] is True
    assert bodies[2]["body"] == "new while away" and bodies[2]["id"] > ids[2]
    assert [e for e, _, _ in replayed] == ["message"] * 3
    # Live afterwards: the next change comes once, numbered after everything replayed.
    act(carol, "/app/rooms.general", {"body": "after the resume"})
    live = wait_events(back, 4)
    assert live[3][0] == "message" and live[3][1] == 9 and live[3][2]["body"] == "after the resume"
    quiet(back, 1.0)
    assert len(back.messages(TOPIC)) == 4  # no duplicate of anything replayed
    for stomp in (alice, carol, back):
        stomp.close()
