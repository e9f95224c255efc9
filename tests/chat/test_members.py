"""Members and rooms over REST: owners add and remove members of private rooms, anyone leaves (ownership
passes on, the last member archives a private room), the user directory, and read markers in room JSON."""

from __future__ import annotations

import pytest

from chat import services
from chat.models import Membership, Room

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(make_user):
    return {name: make_user(name) for name in ("olive", "pete", "quinn", "rita")}


@pytest.fixture
def private(people):
    """A private room owned by olive with pete, then quinn, added (in that order)."""
    room = services.room_create(creator=people["olive"], name="Inner circle", is_private=True)
    for name in ("pete", "quinn"):
        services.room_member_add(room=room, actor=people["olive"], username=name)
    return room


def members_of(client, slug: str) -> dict[str, str]:
    response = client.get(f"/api/rooms/{slug}/members/")
    assert response.status_code == 200, response.content
    return {m["username"]: m["role"] for m in response.json()["results"]}


def test_owner_adds_a_member_who_then_sees_the_room(people, private, auth_client):
    olive, rita = auth_client(people["olive"]), auth_client(people["rita"])
    assert rita.get(f"/api/rooms/{private.slug}/").status_code == 404
    added = olive.post(f"/api/rooms/{private.slug}/members/", {"username": "rita"}, format="json")
    assert added.status_code == 201 and added.json()["username"] == "rita" and added.json()["role"] == "member"
    assert rita.get(f"/api/rooms/{private.slug}/").json()["is_member"] is True
    assert members_of(olive, private.slug) == {"olive": "owner", "pete": "member", "quinn": "member", "rita": "member"}


def test_a_member_who_is_not_owner_cannot_add_or_remove(people, private, auth_client):
    pete = auth_client(people["pete"])
    denied = pete.post(f"/api/rooms/{private.slug}/members/", {"username": "rita"}, format="json")
    assert denied.status_code == 403 and denied.json()["code"] == "forbidden"
    assert "owner" in denied.json()["detail"]
    removal = pete.delete(f"/api/rooms/{private.slug}/members/quinn/")
    assert removal.status_code == 403
    assert set(members_of(pete, private.slug)) == {"olive", "pete", "quinn"}


def test_adding_to_a_public_room_is_refused(people, auth_client):
    room = services.room_create(creator=people["olive"], name="Town square")
    response = auth_client(people["olive"]).post(
        f"/api/rooms/{room.slug}/members/", {"username": "rita"}, format="json"
    )
    assert response.status_code == 400 and "public room" in response.json()["detail"]
    assert not Membership.objects.filter(room=room, user=people["rita"]).exists()


def test_adding_an_unknown_or_inactive_user_is_a_404(people, private, auth_client, make_user):
    make_user("sleeper", is_active=False)
    olive = auth_client(people["olive"])
    for name in ("nobody", "sleeper"):
        response = olive.post(f"/api/rooms/{private.slug}/members/", {"username": name}, format="json")
        assert response.status_code == 404 and response.json()["detail"] == f"no user {name!r}"
    missing = olive.post(f"/api/rooms/{private.slug}/members/", {}, format="json")
    assert missing.status_code == 400


def test_owner_removes_a_member_by_path_who_then_loses_the_room(people, private, auth_client):
    olive, pete = auth_client(people["olive"]), auth_client(people["pete"])
    assert olive.delete(f"/api/rooms/{private.slug}/members/pete/").status_code == 204
    assert pete.get(f"/api/rooms/{private.slug}/messages/").status_code == 404
    assert private.slug not in [r["slug"] for r in pete.get("/api/rooms/").json()["results"]]
    again = olive.delete(f"/api/rooms/{private.slug}/members/pete/")
    assert again.status_code == 404 and "not a member" in again.json()["detail"]
    unknown = olive.delete(f"/api/rooms/{private.slug}/members/nobody/")
    assert unknown.status_code == 404 and unknown.json()["detail"] == "no user 'nobody'"


def test_the_owner_cannot_be_removed(people, private, auth_client):
    olive = auth_client(people["olive"])
    itself = olive.delete(f"/api/rooms/{private.slug}/members/olive/")
    assert itself.status_code == 400 and "leave" in itself.json()["detail"]
    # A second owner (made in the admin) is not removable by the first either.
    Membership.objects.filter(room=private, user=people["pete"]).update(role=Membership.Role.OWNER)
    other_owner = olive.delete(f"/api/rooms/{private.slug}/members/pete/")
    assert other_owner.status_code == 403 and "owner" in other_owner.json()["detail"]
    assert members_of(olive, private.slug)["pete"] == "owner"


def test_members_of_a_direct_room_cannot_be_changed(people, auth_client):
    room, _ = services.direct_room_get_or_create(user=people["olive"], other_username="pete")
    olive = auth_client(people["olive"])
    assert olive.post(f"/api/rooms/{room.slug}/members/", {"username": "rita"}, format="json").status_code == 403
    assert olive.delete(f"/api/rooms/{room.slug}/members/pete/").status_code == 403
    leave = olive.post(f"/api/rooms/{room.slug}/leave/")
    assert leave.status_code == 403 and "direct" in leave.json()["detail"]


def test_a_member_leaves_and_leaving_twice_is_a_clear_404(people, private, auth_client):
    quinn = auth_client(people["quinn"])
    left = quinn.post(f"/api/rooms/{private.slug}/leave/")
    assert left.status_code == 200
    assert left.json() == {"room": private.slug, "new_owner": None, "archived": False}
    assert quinn.post(f"/api/rooms/{private.slug}/leave/").status_code == 404  # a private room: no longer visible
    public = services.room_create(creator=people["olive"], name="Open")
    services.room_join(room=public, user=people["quinn"])
    assert quinn.post(f"/api/rooms/{public.slug}/leave/").status_code == 200
    twice = quinn.post(f"/api/rooms/{public.slug}/leave/")
    assert twice.status_code == 404 and twice.json()["detail"] == f"you are not a member of {public.slug!r}"


def test_owner_leaving_hands_the_room_to_the_longest_standing_member(people, private, auth_client):
    # pete was added before quinn: he becomes owner, whatever the names' order.
    left = auth_client(people["olive"]).post(f"/api/rooms/{private.slug}/leave/")
    assert left.status_code == 200 and left.json()["new_owner"] == "pete"
    pete = auth_client(people["pete"])
    assert members_of(pete, private.slug) == {"pete": "owner", "quinn": "member"}
    # The new owner manages the room.
    assert pete.post(f"/api/rooms/{private.slug}/members/", {"username": "rita"}, format="json").status_code == 201
    assert auth_client(people["pete"]).post(f"/api/rooms/{private.slug}/leave/").json()["new_owner"] == "quinn"


def test_ownership_goes_by_join_time_not_by_name(people, auth_client):
    room = services.room_create(creator=people["olive"], name="Order", is_private=True)
    for name in ("rita", "pete"):  # rita first, although pete sorts first
        services.room_member_add(room=room, actor=people["olive"], username=name)
    assert auth_client(people["olive"]).post(f"/api/rooms/{room.slug}/leave/").json()["new_owner"] == "rita"


def test_last_member_leaving_a_private_room_archives_it(people, private, auth_client):
    for name in ("olive", "pete"):
        assert auth_client(people[name]).post(f"/api/rooms/{private.slug}/leave/").json()["archived"] is False
    services.message_create(room=private, author=people["quinn"], body="last words")
    quinn = auth_client(people["quinn"])
    last = quinn.post(f"/api/rooms/{private.slug}/leave/")
    assert last.status_code == 200 and last.json() == {"room": private.slug, "new_owner": None, "archived": True}
    room = Room.objects.get(pk=private.pk)  # kept, with its history
    assert room.archived is not None and room.messages.count() == 1
    assert private.slug not in [r["slug"] for r in quinn.get("/api/rooms/").json()["results"]]


def test_an_archived_room_refuses_sends_and_subscriptions_with_a_clear_error(people, private):
    # An administrator archived it while members remained (the admin's field): hidden, closed, not deleted.
    Room.objects.filter(pk=private.pk).update(archived="2026-01-01T00:00:00Z")
    room = Room.objects.get(pk=private.pk)
    with pytest.raises(services.NotAllowed, match="archived"):
        services.message_prepare(room=room, author=people["pete"], body="hello")
    with pytest.raises(services.NotAllowed, match="archived"):
        services.room_enter(slug=room.slug, user=people["pete"])


def test_archived_rooms_are_hidden_from_lists_but_their_detail_says_archived(people, private, auth_client):
    Room.objects.filter(pk=private.pk).update(archived="2026-01-01T00:00:00Z")
    pete = auth_client(people["pete"])
    assert private.slug not in [r["slug"] for r in pete.get("/api/rooms/").json()["results"]]
    detail = pete.get(f"/api/rooms/{private.slug}/")
    assert detail.status_code == 200 and detail.json()["archived"].startswith("2026-01-01")
    refused = pete.post(f"/api/rooms/{private.slug}/messages/", {"body": "anyone?"}, format="json")
    assert refused.status_code == 403 and "archived" in refused.json()["detail"]


def test_public_room_left_by_everyone_stays_open(people, auth_client):
    room = services.room_create(creator=people["olive"], name="Plaza")
    assert auth_client(people["olive"]).post(f"/api/rooms/{room.slug}/leave/").json()["archived"] is False
    rita = auth_client(people["rita"])
    assert room.slug in [r["slug"] for r in rita.get("/api/rooms/").json()["results"]]
    assert rita.post(f"/api/rooms/{room.slug}/join/").status_code == 200


# --- The directory -----------------------------------------------------------------------------------------


def test_directory_finds_active_users_by_prefix_any_case(people, auth_client, make_user):
    make_user("Percy")
    make_user("penny", is_active=False)
    client = auth_client(people["olive"])
    response = client.get("/api/users/", {"q": "pE"})
    assert response.status_code == 200
    assert [u["username"] for u in response.json()["results"]] == sorted(["Percy", "pete"])
    assert response.json()["next_after"] is None
    assert response.json()["results"][0] == {"username": "Percy"}  # names only, nothing else about a user
    everyone = [u["username"] for u in client.get("/api/users/").json()["results"]]
    assert everyone == sorted(["Percy", "olive", "pete", "quinn", "rita"])


def test_directory_pages_with_a_name_cursor(auth_client, make_user):
    users = [make_user(f"user{i:02d}") for i in range(7)]
    client = auth_client(users[0])
    seen, after, pages = [], None, 0
    while True:
        page = client.get("/api/users/", {"q": "user", "limit": 3, **({"after": after} if after else {})}).json()
        seen += [u["username"] for u in page["results"]]
        pages += 1
        after = page["next_after"]
        if after is None or pages > 5:
            break
    assert seen == [f"user{i:02d}" for i in range(7)] and pages == 3


def test_directory_needs_authentication_and_checks_its_parameters(people, api_client, auth_client):
    assert api_client.get("/api/users/", {"q": "p"}).status_code == 401
    client = auth_client(people["olive"])
    assert client.get("/api/users/", {"limit": "x"}).status_code == 400
    assert client.get("/api/users/", {"limit": 0}).status_code == 400
    assert client.get("/api/users/", {"q": "p" * 151}).status_code == 400
    assert len(client.get("/api/users/", {"limit": 10_000}).json()["results"]) == 4  # capped, not refused


# --- Read state in room JSON -------------------------------------------------------------------------------


def test_room_detail_gives_my_marker_and_in_a_direct_room_the_other_members(people, auth_client):
    room, _ = services.direct_room_get_or_create(user=people["olive"], other_username="pete")
    first = services.message_create(room=room, author=people["olive"], body="one")[0]
    second = services.message_create(room=room, author=people["olive"], body="two")[0]
    olive, pete = auth_client(people["olive"]), auth_client(people["pete"])
    body = pete.post(f"/api/rooms/{room.slug}/read/", {"last_read_message_id": first.id}, format="json")
    assert body.json() == {"last_read_message_id": first.id}
    olive.post(f"/api/rooms/{room.slug}/read/", {"message_id": second.id}, format="json")
    mine = olive.get(f"/api/rooms/{room.slug}/").json()
    assert mine["last_read_message_id"] == second.id and mine["other_last_read_message_id"] == first.id
    theirs = pete.get(f"/api/rooms/{room.slug}/").json()
    assert theirs["last_read_message_id"] == first.id and theirs["other_last_read_message_id"] == second.id
    assert pete.post(f"/api/rooms/{room.slug}/read/", {}, format="json").status_code == 400


def test_group_room_detail_has_my_marker_but_no_other(people, private, auth_client):
    message = services.message_create(room=private, author=people["olive"], body="hi")[0]
    pete = auth_client(people["pete"])
    pete.post(f"/api/rooms/{private.slug}/read/", {"last_read_message_id": message.id}, format="json")
    detail = pete.get(f"/api/rooms/{private.slug}/").json()
    assert detail["last_read_message_id"] == message.id and detail["other_last_read_message_id"] is None


def test_a_read_marker_moving_in_a_direct_room_is_announced_after_commit(
    people, monkeypatch, django_capture_on_commit_callbacks
):
    import stompengine.broker as broker

    published = []
    monkeypatch.setattr(broker, "publish_sync", lambda *args, **kwargs: published.append((args, kwargs)))
    direct, _ = services.direct_room_get_or_create(user=people["olive"], other_username="pete")
    group = services.room_create(creator=people["olive"], name="G")
    ids = [services.message_create(room=r, author=people["olive"], body="x")[0].id for r in (direct, direct, group)]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.room_mark_read(room=direct, user=people["pete"], message_id=ids[0])
    assert published == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert published == [
        (
            (f"/topic/rooms.{direct.slug}", {"user": "pete", "last_read_message_id": ids[0]}),
            {"headers": {"event": "read"}},
        )
    ]
    with django_capture_on_commit_callbacks(execute=True):
        services.room_mark_read(room=direct, user=people["pete"], message_id=ids[0])  # not moved: nothing
        services.room_mark_read(room=group, user=people["olive"], message_id=ids[2])  # a group room: nothing
    assert len(published) == 1
