"""The notification REST API: pages, read markers, counts, tickets; other users' rows are 404."""

import pytest

from notifications import services
from notifications.models import Notification

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob(make_user):
    return make_user("bob")


def create(user, n: int, kind: str = "mention") -> list[Notification]:
    return [services.notification_create(recipient=user, kind=kind, payload={"n": i}) for i in range(n)]


def test_list_is_newest_first_and_paginated_with_a_before_cursor(auth_client, bob):
    created = create(bob, 5)
    client = auth_client(bob)
    first = client.get("/api/notifications/?limit=2").json()
    assert [n["id"] for n in first["results"]] == [created[4].pk, created[3].pk]
    assert first["results"][0] == {"id": created[4].pk, "kind": "mention", "payload": {"n": 4},
                                   "created": first["results"][0]["created"], "read": False}  # fmt: skip
    second = client.get(f"/api/notifications/?limit=2&before={first['next_before']}").json()
    assert [n["id"] for n in second["results"]] == [created[2].pk, created[1].pk]
    last = client.get(f"/api/notifications/?limit=2&before={second['next_before']}").json()
    assert [n["id"] for n in last["results"]] == [created[0].pk] and last["next_before"] is None


def test_list_shows_only_my_notifications_and_can_filter_unread(auth_client, bob, make_user):
    mine = create(bob, 3)
    create(make_user("alice"), 2)
    services.notification_mark_read(notification=mine[0])
    client = auth_client(bob)
    assert len(client.get("/api/notifications/").json()["results"]) == 3
    assert [n["id"] for n in client.get("/api/notifications/?unread=1").json()["results"]] == [mine[2].pk, mine[1].pk]


def test_bad_page_parameters_are_json_400(auth_client, bob):
    response = auth_client(bob).get("/api/notifications/?limit=abc")
    assert response.status_code == 400 and "limit" in response.json()["errors"]
    assert auth_client(bob).get("/api/notifications/?limit=100000").status_code == 400


def test_mark_one_read_and_the_unread_count_follows(auth_client, bob):
    first, _ = create(bob, 2)
    client = auth_client(bob)
    assert client.get("/api/notifications/unread-count/").json() == {"unread": 2}
    response = client.post(f"/api/notifications/{first.pk}/read/")
    assert response.status_code == 200 and response.json()["read"] is True
    assert client.get("/api/notifications/unread-count/").json() == {"unread": 1}


def test_another_users_notification_is_404_not_403(auth_client, bob, make_user):
    (theirs,) = create(make_user("alice"), 1)
    response = auth_client(bob).post(f"/api/notifications/{theirs.pk}/read/")
    assert response.status_code == 404 and response["content-type"] == "application/json"
    assert Notification.objects.get(pk=theirs.pk).read is False
    assert auth_client(bob).post("/api/notifications/999999/read/").status_code == 404


def test_read_all_marks_everything_or_up_to_an_id(auth_client, bob, make_user):
    created = create(bob, 4)
    (theirs,) = create(make_user("alice"), 1)
    client = auth_client(bob)
    assert client.post("/api/notifications/read-all/", {"up_to": created[1].pk}, format="json").json() == {
        "updated": 2, "unread": 2}  # fmt: skip
    assert client.post("/api/notifications/read-all/").json() == {"updated": 2, "unread": 0}
    assert Notification.objects.get(pk=theirs.pk).read is False


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/api/notifications/"), ("post", "/api/notifications/1/read/"), ("post", "/api/notifications/read-all/"),
     ("get", "/api/notifications/unread-count/"), ("post", "/api/notifications/ticket/")],
)  # fmt: skip
def test_anonymous_requests_are_json_401(api_client, method, path):
    response = getattr(api_client, method)(path)
    assert response.status_code == 401 and response["content-type"] == "application/json"


def test_ticket_is_issued_for_a_jwt_and_stored_only_as_a_hash(auth_client, bob):
    from accounts.models import OneTimeCode

    response = auth_client(bob).post("/api/notifications/ticket/")
    assert response.status_code == 201 and response["cache-control"] == "no-store"
    body = response.json()
    assert body["stream"] == "/api/notifications/stream/" and body["expires_in"] == 60
    code = OneTimeCode.objects.get(user=bob)
    assert code.purpose == "sse_ticket" and body["ticket"] not in code.code_hash


def test_a_session_alone_does_not_buy_a_ticket(client, bob):
    client.force_login(bob)
    assert client.post("/api/notifications/ticket/").status_code == 401
