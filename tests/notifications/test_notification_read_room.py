"""Opening a room reads its mentions (issue 20): POST /api/notifications/read-room/, and the read events
that tell the user's open pages (one, room, all) with the unread count after the change."""

import json

import pytest

from notifications import services
from notifications.models import Notification

pytestmark = pytest.mark.django_db


@pytest.fixture
def read_events(monkeypatch):
    """The read events published (user id, parsed data), in order; only after a commit."""
    sent: list[tuple[int, dict]] = []
    monkeypatch.setattr(
        services, "read_event_publish", lambda *, user_id, data: sent.append((user_id, json.loads(data)))
    )
    return sent


def notify(user, kind: str, room: str | None) -> Notification:
    payload = {"room": room, "room_name": room, "author": "alice", "excerpt": "hi"} if room else {"text": "hello"}
    return Notification.objects.create(recipient=user, kind=kind, payload=payload)


def test_read_room_marks_only_that_rooms_mentions_and_direct_messages_of_the_caller(
    auth_client, make_user, read_events, django_capture_on_commit_callbacks
):
    bob, carol = make_user("bob"), make_user("carol")
    here = [notify(bob, "mention", "lobby"), notify(bob, "mention", "lobby")]
    dm = notify(bob, "direct_message", "dm-1-2")
    elsewhere = notify(bob, "mention", "side")
    invite = notify(bob, "room_invite", "lobby")  # not a message of the room: stays for the bell
    announcement = notify(bob, "announcement", None)
    theirs = notify(carol, "mention", "lobby")
    client = auth_client(bob)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/notifications/read-room/", {"room": "lobby"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"updated": 2, "unread": 4}
    read = set(Notification.objects.filter(read=True).values_list("pk", flat=True))
    assert read == {n.pk for n in here}
    assert not read & {dm.pk, elsewhere.pk, invite.pk, announcement.pk, theirs.pk}
    assert read_events == [(bob.pk, {"scope": "room", "room": "lobby", "unread": 4})]
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/api/notifications/read-room/", {"room": "dm-1-2"}, format="json").json() == {
            "updated": 1, "unread": 3}  # fmt: skip
    # Nothing left to read there: no event, the same count.
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/api/notifications/read-room/", {"room": "lobby"}, format="json").json() == {
            "updated": 0, "unread": 3}  # fmt: skip
    assert [data["room"] for _, data in read_events] == ["lobby", "dm-1-2"]


@pytest.mark.parametrize(
    "body", [{}, {"room": ""}, {"room": "   "}, {"room": 5}, {"room": ["lobby"]}, {"room": "x" * 81}]
)
def test_read_room_without_a_room_slug_is_a_json_400(auth_client, make_user, body):
    response = auth_client(make_user("bob")).post("/api/notifications/read-room/", body, format="json")
    assert response.status_code == 400 and response["content-type"] == "application/json"
    assert "room" in response.json()["errors"]


def test_read_room_needs_authentication(api_client):
    response = api_client.post("/api/notifications/read-room/", {"room": "lobby"}, format="json")
    assert response.status_code == 401


def test_marking_one_or_all_read_publishes_a_read_event_after_commit_only_when_something_changed(
    auth_client, make_user, read_events, django_capture_on_commit_callbacks
):
    bob = make_user("bob")
    first, second, third = (notify(bob, "mention", "lobby") for _ in range(3))
    client = auth_client(bob)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        client.post(f"/api/notifications/{first.pk}/read/")
    assert len(callbacks) == 1
    # One commit per request, as on a server (the count is taken after each commit).
    for path, body in [(f"{first.pk}/read/", None),  # already read: nothing to tell
                       ("read-all/", {"up_to": second.pk}), ("read-all/", {}),
                       ("read-all/", {})]:  # fmt: skip  # the last: nothing left
        with django_capture_on_commit_callbacks(execute=True):
            client.post(f"/api/notifications/{path}", body, format="json")
    assert read_events == [
        (bob.pk, {"scope": "one", "id": first.pk, "unread": 2}),
        (bob.pk, {"scope": "all", "up_to": second.pk, "unread": 1}),
        (bob.pk, {"scope": "all", "up_to": None, "unread": 0}),
    ]
    assert not Notification.objects.filter(pk=third.pk, read=False).exists()


def test_a_rolled_back_read_is_never_announced(make_user, read_events, django_capture_on_commit_callbacks):
    from django.db import transaction

    bob = make_user("bob")
    notify(bob, "mention", "lobby")
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        services.notifications_mark_room_read(user=bob, room_slug="lobby")
        raise RuntimeError("rolled back")
    assert read_events == []
    assert Notification.objects.filter(recipient=bob, read=False).count() == 1
