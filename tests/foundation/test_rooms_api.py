"""REST flows end to end: rooms, membership, history with cursors, unread counts, permissions."""

import pytest

from chat import services
from chat.exceptions import InvalidInput
from chat.models import Message

pytestmark = pytest.mark.django_db


def test_register_token_room_join_post_history_unread_flow(api_client, make_user, auth_client):
    # Register through the API and get a token, as a new client would.
    reg = api_client.post("/api/auth/register/", {"username": "owner1", "password": "a-long-passphrase"}, format="json")
    owner = auth_client(
        __import__("django.contrib.auth", fromlist=["get_user_model"]).get_user_model().objects.get(username="owner1")
    )
    created = owner.post("/api/rooms/", {"name": "Book club"}, format="json")
    assert reg.status_code == 201 and created.status_code == 201
    slug = created.json()["slug"]
    assert slug == "book-club" and created.json()["role"] == "owner"

    reader_user = make_user("reader")
    reader = auth_client(reader_user)
    assert reader.post(f"/api/rooms/{slug}/join/").status_code == 200
    assert reader.post(f"/api/rooms/{slug}/join/").status_code == 200  # idempotent

    from django.contrib.auth import get_user_model

    author = get_user_model().objects.get(username="owner1")
    room = services.Room.objects.get(slug=slug) if hasattr(services, "Room") else None
    from chat.models import Room

    room = Room.objects.get(slug=slug)
    ids = [services.message_create(room=room, author=author, body=f"message {i}")[0].id for i in range(7)]

    page = reader.get(f"/api/rooms/{slug}/messages/?limit=3").json()
    assert [m["id"] for m in page["results"]] == ids[-3:]
    assert page["results"][0]["author"] == "owner1"
    older = reader.get(f"/api/rooms/{slug}/messages/?limit=3&before={page['next_before']}").json()
    assert [m["id"] for m in older["results"]] == ids[1:4]
    after = reader.get(f"/api/rooms/{slug}/messages/?after={ids[4]}").json()
    assert [m["id"] for m in after["results"]] == ids[5:]

    rooms = {r["slug"]: r for r in reader.get("/api/rooms/").json()["results"]}
    assert rooms[slug]["unread"] == 7
    assert reader.post(f"/api/rooms/{slug}/read/", {"message_id": ids[4]}, format="json").json() == {
        "last_read_message_id": ids[4]
    }
    rooms = {r["slug"]: r for r in reader.get("/api/rooms/").json()["results"]}
    assert rooms[slug]["unread"] == 2
    # The author's own messages never count as unread for the author.
    assert {r["slug"]: r for r in owner.get("/api/rooms/").json()["results"]}[slug]["unread"] == 0


def test_read_marker_never_moves_backwards(make_user, auth_client):
    user = make_user("u1")
    room = services.room_create(creator=user, name="R")
    first = services.message_create(room=room, author=user, body="a")[0]
    second = services.message_create(room=room, author=user, body="b")[0]
    client = auth_client(user)
    client.post(f"/api/rooms/{room.slug}/read/", {"message_id": second.id}, format="json")
    response = client.post(f"/api/rooms/{room.slug}/read/", {"message_id": first.id}, format="json")
    assert response.json()["last_read_message_id"] == second.id


def test_non_member_cannot_see_or_read_a_private_room(make_user, auth_client):
    owner, outsider = make_user("owner"), make_user("outsider")
    room = services.room_create(creator=owner, name="Secret", is_private=True)
    services.message_create(room=room, author=owner, body="hidden")
    client = auth_client(outsider)
    assert room.slug not in [r["slug"] for r in client.get("/api/rooms/").json()["results"]]
    for method, path in [
        ("get", f"/api/rooms/{room.slug}/messages/"),
        ("get", f"/api/rooms/{room.slug}/members/"),
        ("post", f"/api/rooms/{room.slug}/join/"),
        ("post", f"/api/rooms/{room.slug}/messages/"),
    ]:
        response = getattr(client, method)(path, {"body": "x"} if method == "post" else None, format="json")
        assert response.status_code == 404, path
        assert "hidden" not in response.content.decode()


def test_owner_adds_and_removes_members_of_a_private_room(make_user, auth_client):
    owner, friend, stranger = make_user("own"), make_user("friend"), make_user("stranger")
    room = services.room_create(creator=owner, name="Private", is_private=True)
    owner_client = auth_client(owner)
    assert (
        owner_client.post(f"/api/rooms/{room.slug}/members/", {"username": "friend"}, format="json").status_code == 201
    )
    friend_client = auth_client(friend)
    assert friend_client.get(f"/api/rooms/{room.slug}/messages/").status_code == 200
    members = friend_client.get(f"/api/rooms/{room.slug}/members/").json()["results"]
    assert {m["username"]: m["role"] for m in members} == {"own": "owner", "friend": "member"}
    # A member who is not the owner cannot change membership.
    denied = friend_client.post(f"/api/rooms/{room.slug}/members/", {"username": "stranger"}, format="json")
    assert denied.status_code == 403
    removed = owner_client.delete(f"/api/rooms/{room.slug}/members/", {"username": "friend"}, format="json")
    assert removed.status_code == 204
    assert friend_client.get(f"/api/rooms/{room.slug}/messages/").status_code == 404
    assert stranger.pk  # never added


def test_message_validation_errors_are_json(make_user, auth_client, settings):
    settings.CHAT_MESSAGE_MAX_LENGTH = 10
    user = make_user("v")
    room = services.room_create(creator=user, name="V")
    client = auth_client(user)
    empty = client.post(f"/api/rooms/{room.slug}/messages/", {"body": "   "}, format="json")
    assert empty.status_code == 400 and "empty" in empty.json()["detail"]
    long = client.post(f"/api/rooms/{room.slug}/messages/", {"body": "x" * 11}, format="json")
    assert long.status_code == 400 and "at most 10" in long.json()["detail"]
    bad_cursor = client.get(f"/api/rooms/{room.slug}/messages/?before=abc")
    assert bad_cursor.status_code == 400


def test_text_no_database_can_store_is_refused_before_it_joins_a_batch(make_user, auth_client):
    # A lone surrogate (JSON "\ud800") or NUL inside a write batch failed the whole batch, everyone's messages
    # with it. The STOMP SEND path validates with message_prepare; REST with its serializer first.
    user = make_user("w")
    room = services.room_create(creator=user, name="W")
    for body, client_id in (("half \ud800 a pair", None), ("fine", "x\ud83d"), ("nul \x00 inside", None)):
        with pytest.raises(InvalidInput) as refused:
            services.message_prepare(room=room, author=user, body=body, client_id=client_id)
        assert "Unicode" in str(refused.value) or "NUL" in str(refused.value)
    client = auth_client(user)
    url = f"/api/rooms/{room.slug}/messages/"
    for raw in ('{"body": "half \\ud800 a pair"}', '{"body": "nul \\u0000 inside"}'):
        refused = client.post(url, raw, content_type="application/json")
        assert refused.status_code == 400 and refused.json()["detail"], raw
    assert client.post(url, {"body": "still fine"}, format="json").status_code == 201
    assert [m["body"] for m in client.get(url).json()["results"]] == ["still fine"]


def test_repeated_client_id_is_stored_once(make_user, auth_client):
    user = make_user("w")
    room = services.room_create(creator=user, name="W")
    client = auth_client(user)
    first = client.post(f"/api/rooms/{room.slug}/messages/", {"body": "hi", "client_id": "c-1"}, format="json")
    again = client.post(f"/api/rooms/{room.slug}/messages/", {"body": "hi", "client_id": "c-1"}, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert Message.objects.filter(room=room).count() == 1


def test_author_is_the_authenticated_user_not_the_payload(make_user, auth_client):
    user, victim = make_user("real"), make_user("victim")
    room = services.room_create(creator=user, name="A")
    response = auth_client(user).post(
        f"/api/rooms/{room.slug}/messages/", {"body": "hi", "author": "victim"}, format="json"
    )
    assert response.json()["author"] == "real"
    assert victim.messages.count() == 0


def test_direct_rooms_are_idempotent_private_pairs(make_user, auth_client):
    a, b, c = make_user("da"), make_user("db"), make_user("dc")
    first = auth_client(a).post("/api/dms/db/")
    second = auth_client(b).post("/api/dms/da/")
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["slug"] == second.json()["slug"]
    assert first.json()["kind"] == "direct" and first.json()["is_private"]
    assert auth_client(c).get(f"/api/rooms/{first.json()['slug']}/messages/").status_code == 404
    assert auth_client(a).post("/api/dms/nobody/").status_code == 404
    assert auth_client(a).post("/api/dms/da/").status_code == 400
    assert c.pk


def test_slug_must_be_unique_and_clean(make_user, auth_client):
    client = auth_client(make_user("s"))
    assert client.post("/api/rooms/", {"name": "One", "slug": "one"}, format="json").status_code == 201
    assert client.post("/api/rooms/", {"name": "Two", "slug": "one"}, format="json").status_code == 400
    assert client.post("/api/rooms/", {"name": "Bad", "slug": "Not A Slug"}, format="json").status_code == 400
    assert client.post("/api/rooms/", {"name": "One"}, format="json").json()["slug"] == "one-2"
