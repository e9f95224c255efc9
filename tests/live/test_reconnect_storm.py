"""A reconnect storm against a real daphne: 1,000 clients at once, each resuming two rooms with since-id.

The CONNECT admission (STOMP_CONNECT_RATE/BURST, set low here so that it must refuse) answers the excess
with ERROR code:busy and a retry-after; the clients (scripts/stomp_storm.py, as the page does) come back
after it plus jitter. Every client must end up subscribed to both rooms within 30 seconds with exactly the
messages stored after its since-id, once each and in order: one failed connection fails the test.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.tokens import AccessToken

from chat.models import Membership, Message, Room
from tests.conftest import REPO

pytestmark = pytest.mark.live
CLIENTS = 1000
ROOMS = ("storm-a", "storm-b")


@pytest.fixture
def storm_data(live_db, tmp_path):
    user_model = get_user_model()
    user_model.objects.bulk_create([user_model(username=f"storm{i}", password="!") for i in range(CLIENTS)])
    people = list(user_model.objects.filter(username__startswith="storm").order_by("id"))
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("".join(f"{AccessToken.for_user(user)}\n" for user in people))
    rng = random.Random(1000)
    plan: dict[str, dict[str, list[int]]] = {str(n): {} for n in range(CLIENTS)}
    for slug in ROOMS:
        room = Room.objects.create(slug=slug, name=slug, creator=people[0], is_private=True)
        Membership.objects.bulk_create([Membership(room=room, user=user) for user in people])
        Message.objects.bulk_create([Message(room=room, author=people[0], body=f"m{n}") for n in range(30)])
        ids = list(Message.objects.filter(room=room).order_by("id").values_list("id", flat=True))
        for n in range(CLIENTS):
            back = rng.randint(0, 6)
            plan[str(n)][slug] = [ids[-1 - back], back]
    since = tmp_path / "since.json"
    since.write_text(json.dumps(plan))
    return tokens, since


def test_a_thousand_clients_reconnecting_at_once_are_all_resubscribed_within_30_seconds(daphne_factory, storm_data):
    tokens, since = storm_data
    server = daphne_factory(STOMP_CONNECT_RATE="150", STOMP_CONNECT_BURST="200")
    done = subprocess.run(
        [sys.executable, "-m", "scripts.stomp_storm", "storm", "--url", f"{server.ws_url}/ws", "--tokens", str(tokens),
         "--clients", str(CLIENTS), "--rooms", ",".join(ROOMS), "--since-file", str(since), "--spread", "1",
         "--deadline", "30"],
        cwd=REPO, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result))
    assert result["busy_refusals"] > 0, "the admission never refused: the test did not exercise it"
    assert result["problems"] == [] and result["errors"] == {}, result
    assert (result["subscribed"], result["failed"]) == (CLIENTS, 0), result
    assert result["seconds_to_all_subscribed"] <= 30
