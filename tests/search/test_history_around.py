"""GET /api/rooms/<slug>/messages/?around=<id>: a message with its context, where a search result opens."""

import pytest

from chat import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def room_with_history(make_user):
    ann = make_user("ann")
    room = services.room_create(creator=ann, name="History", slug="history")
    ids = [services.message_create(room=room, author=ann, body=f"m{n}")[0].id for n in range(30)]
    return ann, room, ids


def page(auth_client, user, **params):
    return auth_client(user).get("/api/rooms/history/messages/", params)


def test_around_puts_the_message_in_the_middle_and_both_cursors_continue_without_gaps(auth_client, room_with_history):
    ann, _, ids = room_with_history
    body = page(auth_client, ann, around=ids[15], limit=9).json()
    assert [m["id"] for m in body["results"]] == ids[11:20]
    assert (body["next_before"], body["next_after"]) == (ids[11], ids[19])
    older = page(auth_client, ann, before=body["next_before"], limit=50).json()["results"]
    newer = page(auth_client, ann, after=body["next_after"], limit=50).json()["results"]
    assert [m["id"] for m in older + body["results"] + newer] == ids


@pytest.mark.parametrize(
    ("index", "window"), [(0, slice(0, 9)), (2, slice(0, 9)), (29, slice(21, 30)), (27, slice(21, 30))]
)
def test_near_either_end_the_other_side_fills_the_page(auth_client, room_with_history, index, window):
    ann, _, ids = room_with_history
    body = page(auth_client, ann, around=ids[index], limit=9).json()
    assert [m["id"] for m in body["results"]] == ids[window]
    assert (body["next_before"] is None) == (window.start == 0)
    assert (body["next_after"] is None) == (window.stop == 30)


def test_around_a_message_of_another_room_or_a_bad_id_is_a_json_4xx(auth_client, room_with_history, make_user):
    ann, _, _ = room_with_history
    other = services.room_create(creator=ann, name="Other", slug="other")
    elsewhere, _ = services.message_create(room=other, author=ann, body="elsewhere")
    assert page(auth_client, ann, around=elsewhere.id).status_code == 404
    assert page(auth_client, ann, around="x").status_code == 400
    secret = services.room_create(creator=ann, name="Secret", slug="secret", is_private=True)
    hidden, _ = services.message_create(room=secret, author=ann, body="hidden")
    bob = make_user("bob")
    assert auth_client(bob).get("/api/rooms/secret/messages/", {"around": hidden.id}).status_code == 404
