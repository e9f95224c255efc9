"""The ASGI app under a real daphne: health, JSON API, CORS, and the demo data command."""

import httpx
import pytest
from django.core.management import call_command

pytestmark = pytest.mark.live


def test_daphne_serves_the_api_with_cors_for_the_frontend_origin(daphne_server, live_db):
    call_command("seed_demo", verbosity=0)
    token = httpx.post(
        f"{daphne_server.url}/api/auth/token/", json={"username": "alice", "password": "chat-demo-pass"}, timeout=10
    )
    assert token.status_code == 200
    rooms = httpx.get(
        f"{daphne_server.url}/api/rooms/",
        headers={"Authorization": f"Bearer {token.json()['access']}", "Origin": "http://localhost:8000"},
        timeout=10,
    )
    assert rooms.status_code == 200
    assert rooms.headers["access-control-allow-origin"] == "http://localhost:8000"
    assert {"general", "random", "team"} <= {r["slug"] for r in rooms.json()["results"]}
    anonymous = httpx.get(f"{daphne_server.url}/api/rooms/", timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["content-type"] == "application/json"


def test_seed_demo_is_idempotent_and_respects_if_empty(db):
    from django.contrib.auth import get_user_model

    call_command("seed_demo", verbosity=0)
    call_command("seed_demo", verbosity=0)
    call_command("seed_demo", "--if-empty", verbosity=0)
    users = get_user_model().objects
    assert set(users.values_list("username", flat=True)) == {"alice", "bob", "carol", "admin"}
    assert users.get(username="admin").is_superuser
    assert users.get(username="alice").check_password("chat-demo-pass")


def test_admin_login_page_and_changelists_render(db, client):
    from django.contrib.auth import get_user_model

    call_command("seed_demo", verbosity=0)
    client.force_login(get_user_model().objects.get(username="admin"))
    for path in ["/admin/", "/admin/chat/room/", "/admin/chat/message/?q=x", "/admin/notifications/notification/",
                 "/admin/auth/user/", "/admin/chat/room/1/change/"]:  # fmt: skip
        assert client.get(path).status_code == 200, path
