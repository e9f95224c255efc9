"""Notification services: who is notified of what, and that publishing waits for the commit."""

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction

from chat import services as chat
from notifications import publishing, services
from notifications.models import Notification
from notifications.services import mentioned_names

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch):
    """Every batch handed to the channel layer, in order (the layer itself is tested live)."""
    batches: list[list[publishing.StreamEvent]] = []
    monkeypatch.setattr(services, "events_publish", lambda events: batches.append(list(events)))
    return batches


def kinds_for(user) -> list[tuple[str, dict]]:
    return [(n.kind, n.payload) for n in Notification.objects.filter(recipient=user)]


def test_mentioned_names_skip_email_addresses_and_trailing_punctuation():
    body = "hi @bob, @Carol. mail me at x@example.com; @bob again, @dave-"
    assert mentioned_names(body) == ["bob", "Carol", "dave"]


def test_mentioned_names_are_capped():
    assert len(mentioned_names(" ".join(f"@user{i}" for i in range(100)))) == services.MENTION_LIMIT


def test_notification_is_published_only_after_the_transaction_commits(
    make_user, published, django_capture_on_commit_callbacks
):
    bob = make_user("bob")
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        notification = services.notification_create(recipient=bob, kind="announcement", payload={"text": "hi"})
        assert published == []  # still inside the transaction
    assert [[e.id for e in batch] for batch in published] == [[notification.pk]]
    event = published[0][0]
    assert event.recipient_id == bob.pk and event.kind == "announcement"
    assert '"payload":{"text":"hi"}' in event.data


def test_a_rolled_back_notification_is_never_published(make_user, published, django_capture_on_commit_callbacks):
    bob = make_user("bob")
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        services.notification_create(recipient=bob, kind="mention", payload={})
        raise RuntimeError("rollback")
    assert published == [] and not Notification.objects.exists()


def test_unknown_kind_is_refused(make_user):
    with pytest.raises(services.NotificationError):
        services.notification_create(recipient=make_user("bob"), kind="spam", payload={})


def test_mention_notifies_users_who_can_see_a_public_room_but_not_the_author(
    make_user, published, django_capture_on_commit_callbacks
):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    make_user("inactive", is_active=False)
    room = chat.room_create(creator=alice, name="General")
    with django_capture_on_commit_callbacks(execute=True):
        chat.message_create(room=room, author=alice, body="@bob @Carol @alice @inactive @nobody look")
    payload = {"room": room.slug, "room_name": "General", "message_id": room.messages.get().pk, "author": "alice",
               "excerpt": "@bob @Carol @alice @inactive @nobody look"}  # fmt: skip
    assert kinds_for(bob) == [("mention", payload)]
    assert [k for k, _ in kinds_for(carol)] == ["mention"]  # not a member: a public room is visible to all
    assert kinds_for(alice) == []
    assert Notification.objects.count() == 2
    assert {e.recipient_id for batch in published for e in batch} == {bob.pk, carol.pk}


def test_mention_in_a_private_room_reaches_only_members(make_user, django_capture_on_commit_callbacks):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    room = chat.room_create(creator=alice, name="Secret", is_private=True)
    with django_capture_on_commit_callbacks(execute=True):
        chat.room_member_add(room=room, actor=alice, username="bob")
    with django_capture_on_commit_callbacks(execute=True):  # the mention is written with the message itself
        chat.message_create(room=room, author=alice, body="@bob and @carol")
    assert [k for k, _ in kinds_for(bob)] == ["room_invite", "mention"]
    assert kinds_for(carol) == []


def test_direct_message_notifies_the_other_member_once_even_when_mentioned(
    make_user, django_capture_on_commit_callbacks
):
    alice, bob = make_user("alice"), make_user("bob")
    room, _ = chat.direct_room_get_or_create(user=alice, other_username="bob")
    with django_capture_on_commit_callbacks(execute=True):
        message, _ = chat.message_create(room=room, author=alice, body="hey @bob\nsecond line")
    assert kinds_for(bob) == [("direct_message", {"room": room.slug, "room_name": room.name, "message_id": message.pk,
                                                  "author": "alice", "excerpt": "hey @bob second line"})]  # fmt: skip
    assert kinds_for(alice) == []


def test_being_added_to_a_private_room_notifies_the_new_member_but_joining_a_public_room_does_not(
    make_user, django_capture_on_commit_callbacks
):
    alice, bob = make_user("alice"), make_user("bob")
    private = chat.room_create(creator=alice, name="Private", is_private=True)
    public = chat.room_create(creator=alice, name="Public")
    with django_capture_on_commit_callbacks(execute=True):
        chat.room_member_add(room=private, actor=alice, username="bob")
        chat.room_member_add(room=private, actor=alice, username="bob")  # idempotent: no second one
        chat.room_join(room=public, user=bob)
    assert kinds_for(bob) == [("room_invite", {"room": private.slug, "room_name": "Private", "by": "alice"})]


def test_announcement_to_all_stores_one_per_active_user_and_publishes_them_in_one_batch(
    make_user, published, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(services, "BULK_BATCH_SIZE", 7)  # several INSERTs
    users = [make_user(f"user{i}") for i in range(20)]
    make_user("gone", is_active=False)
    with django_capture_on_commit_callbacks(execute=True):
        count = services.announcement_create_for_all(text="  maintenance at 10  ", title="Heads up")
    assert count == 20
    stored = Notification.objects.filter(kind="announcement")
    assert sorted(stored.values_list("recipient_id", flat=True)) == sorted(u.pk for u in users)
    assert stored.first().payload == {"title": "Heads up", "text": "maintenance at 10", "by": None}
    assert len(published) == 1 and sorted(e.id for e in published[0]) == sorted(stored.values_list("id", flat=True))


def test_announcement_to_a_room_reaches_its_members_only(make_user, django_capture_on_commit_callbacks):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    room = chat.room_create(creator=alice, name="Team", is_private=True)
    with django_capture_on_commit_callbacks(execute=True):
        chat.room_member_add(room=room, actor=alice, username="bob")
        assert services.announcement_create_for_room(room=room, text="standup", author=alice) == 2
    assert Notification.objects.filter(kind="announcement", recipient=carol).count() == 0
    assert Notification.objects.get(kind="announcement", recipient=bob).payload["room"] == room.slug


def test_empty_announcement_is_refused(make_user):
    with pytest.raises(services.NotificationError):
        services.announcement_create_for_all(text="   ")


def test_publish_reaches_a_member_of_the_recipients_group_on_the_in_memory_layer(
    make_user, django_capture_on_commit_callbacks
):
    bob = make_user("bob")
    layer = publishing.channel_layer()

    async def join() -> str:
        channel = await layer.new_channel()
        await layer.group_add(publishing.group_name(bob.pk), channel)
        return channel

    channel = async_to_sync(join)()
    with django_capture_on_commit_callbacks(execute=True):
        notification = services.notification_create(recipient=bob, kind="mention", payload={"x": 1})
    message = async_to_sync(layer.receive)(channel)
    assert message["type"] == "notification.event" and message["id"] == notification.pk
    assert message["kind"] == "mention"
