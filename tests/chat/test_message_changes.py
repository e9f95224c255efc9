"""Edits, deletes, reactions and replies over REST (issue 20): every action, every refusal, the event stream."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from chat import services
from chat.models import Message, MessageEdit, Reaction, RoomEvent
from notifications.models import Notification
from search.indexing import search_rebuild

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def chat(make_user, auth_client):
    alice, bob, carol, dave = (make_user(n) for n in ("alice", "bob", "carol", "dave"))
    general = services.room_create(creator=alice, name="General", slug="general")
    other = services.room_create(creator=alice, name="Other", slug="other")
    secret = services.room_create(creator=alice, name="Secret", slug="secret", is_private=True)
    services.room_join(room=general, user=bob)
    services.room_join(room=general, user=carol)
    services.room_join(room=other, user=bob)  # a member of both: "a message of another room" is the refusal
    return {
        "alice": alice, "bob": bob, "carol": carol, "dave": dave,
        "general": general, "other": other, "secret": secret,
        "as": {name: auth_client(user) for name, user in (("alice", alice), ("bob", bob), ("carol", carol),
                                                          ("dave", dave))},
    }  # fmt: skip


def post(client, slug: str, body: str, **extra):
    response = client.post(f"/api/rooms/{slug}/messages/", {"body": body, **extra}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def url(slug: str, message_id: int, suffix: str = "") -> str:
    return f"/api/rooms/{slug}/messages/{message_id}/{suffix}"


def events(slug: str) -> list[tuple[int, str, int | None]]:
    return list(RoomEvent.objects.filter(room__slug=slug).order_by("seq").values_list("seq", "kind", "message_id"))


def history(client, slug: str) -> list[dict]:
    response = client.get(f"/api/rooms/{slug}/messages/")
    assert response.status_code == 200
    return response.json()["results"]


def target_id(chat, target: str) -> tuple[int, dict]:
    """The id a refusal test aims at (bob's message in general, alice's in secret, or none), and bob's message."""
    bobs = post(chat["as"]["bob"], "general", "bob's words")
    secret = post(chat["as"]["alice"], "secret", "secret words")
    return {"bobs": bobs["id"], "secret": secret["id"], "unknown": 999_999}[target], bobs


def test_a_new_message_shows_the_new_fields_and_takes_the_rooms_next_event_number(chat):
    first = post(chat["as"]["bob"], "general", "hello")
    assert first["edited"] is None and first["deleted"] is False and first["reply_to"] is None
    assert first["reactions"] == []
    second = post(chat["as"]["carol"], "general", "hi")
    post(chat["as"]["alice"], "other", "elsewhere")
    assert events("general") == [(1, "created", first["id"]), (2, "created", second["id"])]
    assert events("other")[0][0] == 1  # numbered per room


def test_the_author_edits_and_the_previous_text_is_kept(chat):
    message = post(chat["as"]["bob"], "general", "helo")
    response = chat["as"]["bob"].patch(url("general", message["id"]), {"body": "hello"}, format="json")
    assert response.status_code == 200, response.content
    edited = response.json()
    assert edited["body"] == "hello" and edited["edited"] is not None and edited["id"] == message["id"]
    assert list(MessageEdit.objects.filter(message_id=message["id"]).values_list("body", flat=True)) == ["helo"]
    assert [m["body"] for m in history(chat["as"]["alice"], "general")] == ["hello"]
    assert history(chat["as"]["alice"], "general")[0]["edited"] == edited["edited"]
    assert events("general")[-1][1:] == ("edited", message["id"])


@pytest.mark.parametrize(
    ("who", "slug", "target", "body", "status", "code"),
    [
        ("carol", "general", "bobs", "mine now", 403, "forbidden"),  # another user's message
        ("alice", "general", "bobs", "owner edits", 403, "forbidden"),  # owners delete, never edit
        ("dave", "secret", "secret", "x", 404, "not-found"),  # not a member of a private room
        ("bob", "general", "unknown", "x", 404, "not-found"),
        ("bob", "other", "bobs", "x", 404, "not-found"),  # a message of another room
        ("bob", "general", "bobs", "", 400, "invalid"),  # empty
    ],
)
def test_edit_refusals(chat, who, slug, target, body, status, code):
    message_id, bobs = target_id(chat, target)
    response = chat["as"][who].patch(url(slug, message_id), {"body": body}, format="json")
    assert response.status_code == status, response.content
    assert response.json()["code"] == code and response.json()["detail"]
    assert Message.objects.get(pk=bobs["id"]).body == "bob's words"
    assert not MessageEdit.objects.exists()


def test_delete_by_the_author_leaves_a_tombstone_and_erases_text_history_reactions_and_search(chat, settings):
    message = post(chat["as"]["bob"], "general", "a secret plan")
    chat["as"]["bob"].patch(url("general", message["id"]), {"body": "a secret plan v2"}, format="json")
    chat["as"]["carol"].post(url("general", message["id"], "reactions/"), {"emoji": "👍"}, format="json")
    search_rebuild()
    assert chat["as"]["alice"].get("/api/search/", {"q": "plan"}).json()["results"]
    response = chat["as"]["bob"].delete(url("general", message["id"]))
    assert response.status_code == 200, response.content
    tombstone = response.json()
    assert tombstone["deleted"] is True and tombstone["body"] == "" and tombstone["attachments"] == []
    assert tombstone["reactions"] == [] and tombstone["author"] == "bob" and tombstone["id"] == message["id"]
    stored = Message.objects.get(pk=message["id"])
    assert stored.deleted and stored.body == ""
    assert not MessageEdit.objects.filter(message=stored).exists()
    assert not Reaction.objects.filter(message=stored).exists()
    assert chat["as"]["alice"].get("/api/search/", {"q": "plan"}).json()["results"] == []
    assert history(chat["as"]["alice"], "general")[0]["deleted"] is True
    assert [k for _, k, _ in events("general")] == ["created", "edited", "reaction", "deleted"]


def test_the_room_owner_deletes_any_message_of_the_room(chat):
    message = post(chat["as"]["bob"], "general", "spam")
    response = chat["as"]["alice"].delete(url("general", message["id"]))
    assert response.status_code == 200 and response.json()["deleted"] is True


@pytest.mark.parametrize(
    ("who", "slug", "target", "status", "code"),
    [
        ("carol", "general", "bobs", 403, "forbidden"),  # a member, not the author nor the owner
        ("dave", "secret", "secret", 404, "not-found"),
        ("bob", "general", "unknown", 404, "not-found"),
        ("bob", "other", "bobs", 404, "not-found"),
    ],
)
def test_delete_refusals(chat, who, slug, target, status, code):
    message_id, _ = target_id(chat, target)
    response = chat["as"][who].delete(url(slug, message_id))
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert not Message.objects.filter(deleted=True).exists()


def test_a_deleted_message_cannot_be_edited_deleted_again_or_reacted_to(chat):
    message = post(chat["as"]["bob"], "general", "gone soon")
    assert chat["as"]["bob"].delete(url("general", message["id"])).status_code == 200
    assert chat["as"]["bob"].patch(url("general", message["id"]), {"body": "back"}, format="json").status_code == 400
    assert chat["as"]["bob"].delete(url("general", message["id"])).status_code == 400
    response = chat["as"]["carol"].post(url("general", message["id"], "reactions/"), {"emoji": "👍"}, format="json")
    assert response.status_code == 400


def test_reactions_toggle_per_user_with_counts_and_users(chat):
    message = post(chat["as"]["bob"], "general", "lunch?")

    def react(who, emoji):
        response = chat["as"][who].post(url("general", message["id"], "reactions/"), {"emoji": emoji}, format="json")
        assert response.status_code == 200, response.content
        return response.json()

    react("carol", "👍")
    react("alice", "🍕")
    state = react("bob", "👍")
    assert state == {"id": message["id"], "reactions": [
        {"emoji": "👍", "count": 2, "users": ["carol", "bob"]},
        {"emoji": "🍕", "count": 1, "users": ["alice"]},
    ]}  # fmt: skip
    state = react("carol", "👍")  # toggled off
    # Emoji come in the order of their oldest standing reaction: bob's 👍 is newer than alice's 🍕.
    assert state["reactions"] == [{"emoji": "🍕", "count": 1, "users": ["alice"]},
                                  {"emoji": "👍", "count": 1, "users": ["bob"]}]  # fmt: skip
    assert history(chat["as"]["dave"], "general")[0]["reactions"] == state["reactions"]
    react("alice", "👨‍👩‍👧")  # one grapheme of several code points
    react("alice", "🇫🇷")


@pytest.mark.parametrize("emoji", ["a", "👍👍", ":)", "", "\u200d", "<b>", "é"])
def test_a_reaction_must_be_one_emoji(chat, emoji):
    message = post(chat["as"]["bob"], "general", "hi")
    response = chat["as"]["carol"].post(url("general", message["id"], "reactions/"), {"emoji": emoji}, format="json")
    assert response.status_code == 400 and response.json().get("code", "invalid") == "invalid", response.content
    assert not Reaction.objects.exists()


def test_at_most_20_distinct_reactions_per_message(chat):
    message = post(chat["as"]["bob"], "general", "react to me")
    emoji = [chr(0x1F600 + i) for i in range(21)]
    for e in emoji[:20]:
        response = chat["as"]["carol"].post(url("general", message["id"], "reactions/"), {"emoji": e}, "json")
        assert response.status_code == 200, response.content
    response = chat["as"]["carol"].post(
        url("general", message["id"], "reactions/"), {"emoji": emoji[20]}, format="json"
    )
    assert response.status_code == 400 and "20" in response.json()["detail"]
    # One of the 20 already there is still welcome from another user.
    response = chat["as"]["bob"].post(url("general", message["id"], "reactions/"), {"emoji": emoji[0]}, format="json")
    assert response.status_code == 200 and response.json()["reactions"][0]["count"] == 2


@pytest.mark.parametrize(
    ("who", "slug", "target", "status", "code"),
    [
        ("dave", "general", "bobs", 403, "forbidden"),  # a public room's non-member
        ("dave", "secret", "secret", 404, "not-found"),
        ("bob", "general", "unknown", 404, "not-found"),
        ("bob", "other", "bobs", 404, "not-found"),
    ],
)
def test_reaction_refusals(chat, who, slug, target, status, code):
    message_id, _ = target_id(chat, target)
    response = chat["as"][who].post(url(slug, message_id, "reactions/"), {"emoji": "👍"}, format="json")
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert not Reaction.objects.exists()


def test_a_reply_shows_the_id_author_and_start_of_the_original(chat):
    original = post(chat["as"]["bob"], "general", "word " * 40)
    reply = post(chat["as"]["carol"], "general", "agreed", reply_to=original["id"])
    assert reply["reply_to"]["id"] == original["id"] and reply["reply_to"]["author"] == "bob"
    assert reply["reply_to"]["excerpt"].startswith("word word") and len(reply["reply_to"]["excerpt"]) <= 100
    assert history(chat["as"]["alice"], "general")[-1]["reply_to"] == reply["reply_to"]
    # Deleting the original keeps the reply coherent: it points to the tombstone.
    chat["as"]["bob"].delete(url("general", original["id"]))
    assert history(chat["as"]["alice"], "general")[-1]["reply_to"] == {
        "id": original["id"], "author": "bob", "excerpt": ""}  # fmt: skip


@pytest.mark.parametrize(("target", "code"), [("other-room", 404), ("unknown", 404), ("not-a-number", 400)])
def test_reply_refusals(chat, target, code):
    elsewhere = post(chat["as"]["alice"], "other", "in another room")
    reply_to = {"other-room": elsewhere["id"], "unknown": 999_999, "not-a-number": "x"}[target]
    response = chat["as"]["bob"].post(
        "/api/rooms/general/messages/", {"body": "re", "reply_to": reply_to}, format="json"
    )
    assert response.status_code == code, response.content
    assert not Message.objects.filter(room__slug="general").exists()


def test_a_non_member_cannot_reply_in_a_private_room(chat):
    secret = post(chat["as"]["alice"], "secret", "members only")
    body = {"body": "let me in", "reply_to": secret["id"]}
    assert chat["as"]["dave"].post("/api/rooms/secret/messages/", body, format="json").status_code == 404


def test_mentions_added_by_an_edit_notify_only_the_newly_mentioned(chat):
    message = post(chat["as"]["alice"], "general", "hi @bob")
    assert list(Notification.objects.values_list("recipient__username", flat=True)) == ["bob"]
    response = chat["as"]["alice"].patch(url("general", message["id"]), {"body": "hi @bob and @carol"}, format="json")
    assert response.status_code == 200
    chat["as"]["alice"].patch(url("general", message["id"]), {"body": "hi @carol, @bob"}, format="json")
    # Removing a mention and adding it back does not notify twice either.
    chat["as"]["alice"].patch(url("general", message["id"]), {"body": "hi"}, format="json")
    chat["as"]["alice"].patch(url("general", message["id"]), {"body": "hi @carol"}, format="json")
    notes = list(Notification.objects.order_by("id").values_list("recipient__username", "kind", "payload"))
    assert [(n, k) for n, k, _ in notes] == [("bob", "mention"), ("carol", "mention")]
    assert notes[1][2]["excerpt"] == "hi @bob and @carol" and notes[1][2]["message_id"] == message["id"]


def test_the_event_stream_numbers_every_change_in_order(chat):
    first = post(chat["as"]["bob"], "general", "one")
    second = post(chat["as"]["carol"], "general", "two", reply_to=first["id"])
    chat["as"]["bob"].patch(url("general", first["id"]), {"body": "one!"}, format="json")
    chat["as"]["carol"].post(url("general", first["id"], "reactions/"), {"emoji": "🎉"}, format="json")
    chat["as"]["carol"].delete(url("general", second["id"]))
    assert events("general") == [
        (1, "created", first["id"]), (2, "created", second["id"]), (3, "edited", first["id"]),
        (4, "reaction", first["id"]), (5, "deleted", second["id"]),
    ]  # fmt: skip


def test_the_room_detail_gives_the_newest_event_number_to_resume_from(chat):
    detail = lambda: chat["as"]["bob"].get("/api/rooms/general/").json()  # noqa: E731
    assert detail()["event_seq"] == 0
    first = post(chat["as"]["bob"], "general", "one")
    chat["as"]["carol"].post(url("general", first["id"], "reactions/"), {"emoji": "🎉"}, format="json")
    assert detail()["event_seq"] == 2
    assert chat["as"]["bob"].get("/api/rooms/other/").json()["event_seq"] == 0  # per room


def test_edits_and_reactions_spend_the_users_send_budget(chat, settings, monkeypatch):
    from chat.api import views
    from stompengine.realtime.limits import UserSendBudget

    settings.STOMP_USER_SEND_RATE, settings.STOMP_USER_SEND_BURST = 0.01, 3
    monkeypatch.setattr(views, "user_send_budget", UserSendBudget())  # no bucket left by another test
    message = post(chat["as"]["bob"], "general", "budget")
    client = chat["as"]["carol"]
    codes = [
        client.post(url("general", message["id"], "reactions/"), {"emoji": "👍"}, format="json").status_code
        for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    assert client.patch(url("general", message["id"]), {"body": "x"}, format="json").status_code == 429
    response = chat["as"]["bob"].patch(url("general", message["id"]), {"body": "x"}, format="json")
    assert response.status_code == 200  # bob's own budget


def test_the_event_table_keeps_numbers_when_a_message_is_removed_outright(chat):
    """Numbers come from MAX(seq): removing a message row (a user deleted in the admin) must not free them."""
    message = post(chat["as"]["bob"], "general", "one")
    Message.objects.filter(pk=message["id"]).delete()
    post(chat["as"]["carol"], "general", "two")
    assert [seq for seq, _, _ in events("general")] == [1, 2]
    assert connection.vendor == "sqlite"


@pytest.fixture
def admin_client(client, make_user):
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


def test_the_admin_shows_edit_history_and_reactions_and_deletes_through_the_writer_with_a_broadcast(
    chat, admin_client, monkeypatch
):
    from chat import publishing

    message = post(chat["as"]["bob"], "general", "first text")
    chat["as"]["bob"].patch(url("general", message["id"]), {"body": "second text"}, format="json")
    chat["as"]["carol"].post(url("general", message["id"], "reactions/"), {"emoji": "🦄"}, format="json")
    page = admin_client.get(f"/admin/chat/message/{message['id']}/change/").content.decode()
    assert "first text" in page and "🦄" in page and "carol" in page

    published: list[tuple[str, dict, dict]] = []
    monkeypatch.setattr(publishing.broker, "publish", lambda topic, body, **kw: published.append((topic, body, kw)))
    response = admin_client.post(f"/admin/chat/message/{message['id']}/delete/", {"post": "yes"})
    assert response.status_code == 302
    stored = Message.objects.get(pk=message["id"])  # a tombstone, not a removed row
    assert stored.deleted and stored.body == "" and not MessageEdit.objects.filter(message=stored).exists()
    assert events("general")[-1] == (4, "deleted", message["id"])
    ((topic, body, kw),) = published
    assert topic == "/topic/rooms.general" and body["deleted"] is True
    assert dict(kw["headers"]) == {"event": "delete", "event-seq": "4"} and kw["seq"] == 4

    other = post(chat["as"]["carol"], "general", "also bad")
    response = admin_client.post(
        "/admin/chat/message/", {"action": "delete_selected", "_selected_action": [other["id"]], "post": "yes"}
    )
    assert response.status_code == 302
    assert Message.objects.get(pk=other["id"]).deleted
    assert published[-1][2]["headers"][0] == ("event", "delete")


def test_a_worker_of_the_previous_release_still_inserts_messages_after_the_migration(chat):
    # A rolling deploy migrates first; old workers keep inserting rows without the columns issue 20 added.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO chat_message (room_id, author_id, body, created, client_id) VALUES (%s, %s, %s, %s, NULL)",
            [chat["general"].pk, chat["bob"].pk, "from the old release", timezone.now()],
        )
    message = Message.objects.get(body="from the old release")
    assert message.deleted is False and message.edited is None and message.reply_to_id is None
