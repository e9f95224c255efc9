"""XSS payloads in message bodies, room names and user names are inert in the pages and in the admin.

The browser tests (tests/browser/test_pages.py) prove the scripts insert user data as text; these prove
that no server-rendered HTML (pages, admin lists and forms, the operations page) carries a payload as markup.
"""

from __future__ import annotations

import pytest
from django.test import Client

from chat import services
from chat.models import Message
from notifications.models import Notification

PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "<svg/onload=alert(3)>",
    "javascript:alert(4)//</title><script>alert(5)</script>",
]
MARKUP = ["<script>alert", "<img src=x", "<svg/onload", "</title><script>"]


@pytest.fixture
def poisoned(db, make_user, django_user_model):
    # create_user bypasses the username validator, as an import or a careless admin could.
    evil = django_user_model.objects.create_user(username=PAYLOADS[1][:150], password="pw-unused-12345")
    admin = django_user_model.objects.create_superuser(username="root", password="pw-unused-12345")
    room = services.room_create(creator=evil, name=PAYLOADS[0][:120], slug="xss", is_private=False)
    services.room_join(room=room, user=admin)
    for payload in PAYLOADS:
        services.message_create(room=room, author=evil, body=payload)
    Notification.objects.create(recipient=admin, kind="mention", payload={"text": PAYLOADS[2], "room": PAYLOADS[0]})
    return {"evil": evil, "admin": admin, "room": room}


def assert_inert(html: str, where: str) -> None:
    for markup in MARKUP:
        assert markup not in html, f"{where} carries {markup!r} as markup"


def test_registration_refuses_markup_in_user_names(db):
    response = Client().post("/api/auth/register/", {"username": PAYLOADS[1], "password": "a-long-pass-phrase-1"},
                             content_type="application/json")  # fmt: skip
    assert response.status_code == 400


def test_pages_render_payloads_as_text(poisoned):
    client = Client()
    client.force_login(poisoned["admin"])
    for path in ["/", "/rooms/xss/"]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert_inert(response.content.decode(), path)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/rooms/xss/").content.decode()


def test_admin_lists_and_forms_render_payloads_as_text(poisoned):
    client = Client()
    client.force_login(poisoned["admin"])
    message = Message.objects.filter(room=poisoned["room"]).first()
    notification = Notification.objects.first()
    paths = [
        "/admin/",
        "/admin/chat/room/", f"/admin/chat/room/{poisoned['room'].pk}/change/",
        "/admin/chat/message/", f"/admin/chat/message/{message.pk}/change/", "/admin/chat/message/?q=script",
        "/admin/auth/user/", f"/admin/auth/user/{poisoned['evil'].pk}/change/",
        "/admin/notifications/notification/", f"/admin/notifications/notification/{notification.pk}/change/",
    ]  # fmt: skip
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        assert_inert(response.content.decode(), path)


def test_api_returns_payloads_as_json_strings_never_html(poisoned):
    client = Client()
    client.force_login(poisoned["admin"])
    from tests.conftest import access_token_for

    response = client.get(
        "/api/rooms/xss/messages/", HTTP_AUTHORIZATION=f"Bearer {access_token_for(poisoned['admin'])}"
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["X-Content-Type-Options"] == "nosniff"
    bodies = [m["body"] for m in response.json()["results"]]
    assert sorted(bodies) == sorted(PAYLOADS)
