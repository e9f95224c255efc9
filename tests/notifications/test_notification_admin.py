"""The admin's announcement page: every active user or one room's members get a stored, streamed notification."""

import pytest

from chat import services as chat
from notifications.models import Notification

pytestmark = pytest.mark.django_db
ANNOUNCE = "/admin/notifications/notification/announce/"


@pytest.fixture
def admin_client(client, make_user):
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


def test_announcement_page_renders_and_is_linked_from_the_changelist(admin_client):
    assert admin_client.get(ANNOUNCE).status_code == 200
    assert ANNOUNCE.encode() in admin_client.get("/admin/notifications/notification/").content


def test_announcing_to_everyone_stores_one_per_active_user(admin_client, make_user, django_capture_on_commit_callbacks):
    for name in ("alice", "bob"):
        make_user(name)
    make_user("gone", is_active=False)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(ANNOUNCE, {"title": "Heads up", "text": "Maintenance at 10", "audience": "all"})
    assert response.status_code == 302
    recipients = set(Notification.objects.filter(kind="announcement").values_list("recipient__username", flat=True))
    assert recipients == {"root", "alice", "bob"}
    assert Notification.objects.filter(kind="announcement").first().payload["by"] == "root"


def test_announcing_to_a_room_reaches_its_members_and_needs_a_room(admin_client, make_user):
    alice, _ = make_user("alice"), make_user("bob")
    room = chat.room_create(creator=alice, name="Team")
    assert admin_client.post(ANNOUNCE, {"text": "hi", "audience": "room"}).status_code == 200  # form error
    assert not Notification.objects.exists()
    response = admin_client.post(ANNOUNCE, {"text": "standup", "audience": "room", "room": room.pk})
    assert response.status_code == 302
    assert list(Notification.objects.values_list("recipient__username", flat=True)) == ["alice"]


def test_announcement_page_is_for_staff_only(client, make_user):
    client.force_login(make_user("bob"))
    response = client.get(ANNOUNCE)
    assert response.status_code == 302 and "/admin/login/" in response["location"]


def test_mark_read_admin_action(admin_client, make_user):
    from notifications import services

    note = services.notification_create(recipient=make_user("bob"), kind="mention", payload={})
    response = admin_client.post("/admin/notifications/notification/",
                                 {"action": "mark_read", "_selected_action": [note.pk]})  # fmt: skip
    assert response.status_code == 302
    note.refresh_from_db()
    assert note.read
