"""Issue 16 item 2, live: clients that stop reading are cut off with ERROR slow consumer, on daphne and uvicorn.

Each abuser opens a raw WebSocket, CONNECTs, then sends SUBSCRIBEs with ``since-id:0`` into a room with
many stored messages and never reads (a tiny receive buffer, so the kernel holds little for it). The
server must end it with ``ERROR`` (``message:slow consumer``, ``code:slow-consumer``) once its unsent bytes
pass ``STOMP_MAX_UNSENT_BYTES`` (the abuser reads only after the server said so in its log), while an
honest client of the same room keeps sending and receiving. Also item 10 live: a NUL in a header is an
ERROR, never relayed.
"""

from __future__ import annotations

import pytest
from rest_framework_simplejwt.tokens import AccessToken

from chat.models import Message
from chat.services import room_create
from tests.conftest import wait_for
from tests.live.raw_stomp import connect

pytestmark = pytest.mark.live
BOUND = 512 * 1024  # more than one replay: between replays the bytes move into the server's buffer
ABUSERS = 3
SUBSCRIBES = 20
STORED = 300  # x ~1.2 kB: one replay (~360 kB) fits under BOUND, two do not


@pytest.fixture
def crowded_room(make_user):
    owner = make_user("owner")
    room = room_create(creator=owner, name="Crowded")
    Message.objects.bulk_create(
        [Message(room=room, author=owner, body=f"{n:04d} " + "m" * 1000) for n in range(STORED)]
    )
    return room, owner


@pytest.mark.parametrize("server_kind", ["daphne", "uvicorn"])
def test_clients_that_stop_reading_are_cut_off_as_slow_consumers_and_an_honest_client_keeps_working(
    daphne_factory, make_user, crowded_room, server_kind
):
    room, owner = crowded_room
    server = daphne_factory(server=server_kind, STOMP_MAX_UNSENT_BYTES=str(BOUND))
    topic = f"/topic/rooms.{room.slug}"
    honest = connect(server.url.replace("http", "ws"), str(AccessToken.for_user(owner)))
    honest.send("SUBSCRIBE", id="live", destination=topic, receipt="sub")
    assert honest.read_until(lambda f: f.get("receipt-id") == "sub", "RECEIPT") is not None

    abusers = []
    for n in range(ABUSERS):
        token = str(AccessToken.for_user(make_user(f"abuser{n}")))
        abuser = connect(server.url.replace("http", "ws"), token, rcvbuf=4096)
        for k in range(SUBSCRIBES):
            abuser.send("SUBSCRIBE", id=f"s{k}", destination=topic, **{"since-id": "0"})
        abusers.append(abuser)
    wait_for(
        lambda: server.log().count("closing as a slow consumer") >= ABUSERS,
        timeout=60,
        what=f"{ABUSERS} slow-consumer disconnects in the server log",
    )

    # The honest client still works: its SEND is stored (RECEIPT) and broadcast back to it.
    honest.send("SEND", b"still here", destination=f"/app/rooms.{room.slug}", receipt="send")
    assert honest.read_until(lambda f: f.get("receipt-id") == "send", "RECEIPT") is not None
    assert honest.read_until(lambda f: f.command == "MESSAGE" and b"still here" in f.body, "MESSAGE") is not None
    assert not [f for f in honest.frames if f.command == "ERROR"]

    # Each abuser, reading at last, finds the ERROR that ended it, then the end of the connection.
    for abuser in abusers:
        error = abuser.read_until(lambda f: f.command == "ERROR", "ERROR")
        assert error is not None, f"no ERROR; {len(abuser.frames)} frames, closed={abuser.closed}"
        assert (error.get("message"), error.get("code")) == ("slow consumer", "slow-consumer")
        replayed = sum(f.command == "MESSAGE" for f in abuser.frames)
        assert replayed < ABUSERS * SUBSCRIBES * STORED  # cut off long before everything was sent
        abuser.close()
    honest.close()


def test_a_nul_inside_a_header_is_an_error_and_is_never_relayed(daphne_factory, make_user):
    server = daphne_factory()
    url = server.url.replace("http", "ws")
    listener = connect(url, str(AccessToken.for_user(make_user("listener"))))
    listener.send("SUBSCRIBE", id="t", destination="/topic/nul", receipt="sub")
    assert listener.read_until(lambda f: f.get("receipt-id") == "sub", "RECEIPT") is not None
    sender = connect(url, str(AccessToken.for_user(make_user("sender"))))
    sender.ws.send_text(b"SEND\ndestination:/topic/nul\nx-forged:a\0MESSAGE\nreceipt:forged\n\nhi\0")
    sender._flush()
    error = sender.read_until(lambda f: f.command == "ERROR", "ERROR")
    assert error is not None and error.get("message") == "invalid header", sender.frames
    assert b"NUL" in error.body
    listener.send("SEND", b"after", destination="/topic/nul", receipt="after")
    assert listener.read_until(lambda f: f.get("receipt-id") == "after", "RECEIPT") is not None
    messages = [f for f in listener.frames if f.command == "MESSAGE"]
    assert [m.body for m in messages] == [b"after"]  # the forged SEND reached nobody
    listener.close()
    sender.close()
