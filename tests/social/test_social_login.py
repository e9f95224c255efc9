"""Social login against the local OpenID Connect provider, over plain HTTP (so the database can be checked
afterwards): a new identity, linking by verified e-mail only, the hand-over to the same JWT pair, and the edge
cases — denied consent, state mismatch, an unverified e-mail collision, a provider that is down."""

from __future__ import annotations

import httpx
import pytest

from scripts.processes import free_port
from tests.conftest import TEST_PASSWORD
from tests.social.conftest import (
    OIDC_ID,
    SocialSite,
    callback_url,
    login_page_messages,
    query_of,
    social_env,
    social_login_over_http,
)

pytestmark = [pytest.mark.live]


def me(site, pair) -> dict:
    answer = httpx.get(f"{site.api}/api/me/", headers={"Authorization": f"Bearer {pair['access']}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_new_identity_signs_in_as_a_new_user_and_gets_the_same_jwt_pair(social_site, django_user_model):
    from allauth.socialaccount.models import SocialAccount

    login = social_login_over_http(social_site, "sam")

    assert login.callback.headers["location"] == "/"
    assert me(social_site, login.pair)["username"] == "sam"
    refreshed = httpx.post(f"{social_site.api}/api/auth/token/refresh/", json={"refresh": login.pair["refresh"]})
    assert refreshed.status_code == 200, "the refresh token is a simplejwt one like any other"
    sam = django_user_model.objects.get(username="sam")
    assert not sam.has_usable_password()
    account = SocialAccount.objects.get(user=sam)
    assert account.provider == OIDC_ID
    assert sam.email == "sam@example.test"
    # The session is signed in too: the page shows the user, and the hand-over code was used once.
    page = login.client.get(social_site.url("/"))
    assert 'name="chat-user" content="sam"' in page.text
    assert "jwt-handover" not in page.text


def test_a_second_sign_in_with_the_same_identity_uses_the_same_account(social_site, django_user_model):
    first = social_login_over_http(social_site, "sam")
    second = social_login_over_http(social_site, "sam")
    assert me(social_site, first.pair)["id"] == me(social_site, second.pair)["id"]
    assert django_user_model.objects.filter(username__startswith="sam").count() == 1


def test_a_verified_email_links_to_the_existing_account_and_ends_its_old_tokens(
    social_site, make_user, django_user_model
):
    from allauth.socialaccount.models import SocialAccount

    alice = django_user_model.objects.get(username="alice")
    alice.email = "alice@example.test"
    alice.save(update_fields=["email"])
    before = httpx.post(f"{social_site.api}/api/auth/token/", json={"username": "alice", "password": TEST_PASSWORD})
    assert before.status_code == 200

    login = social_login_over_http(social_site, "alice-id")

    assert me(social_site, login.pair)["username"] == "alice"
    assert SocialAccount.objects.get(provider=OIDC_ID).user_id == alice.pk
    # Nobody proved the address when the local account was registered, so whoever did so must not keep
    # access (allauth's pre-account-hijacking defence): the password goes, and so do the old refresh tokens.
    alice.refresh_from_db()
    assert not alice.has_usable_password()
    old = httpx.post(f"{social_site.api}/api/auth/token/refresh/", json={"refresh": before.json()["refresh"]})
    assert old.status_code == 401
    new = httpx.post(f"{social_site.api}/api/auth/token/refresh/", json={"refresh": login.pair["refresh"]})
    assert new.status_code == 200


def test_an_unverified_email_collision_creates_a_new_account_and_leaves_the_existing_one_alone(
    social_site, make_user, django_user_model
):
    from allauth.socialaccount.models import SocialAccount

    carol = make_user("carol", email="carol@example.test")

    login = social_login_over_http(social_site, "mallory")

    signed_in = me(social_site, login.pair)
    assert signed_in["username"] != "carol"
    assert not SocialAccount.objects.filter(user=carol).exists()
    newcomer = django_user_model.objects.get(pk=signed_in["id"])
    assert SocialAccount.objects.get(user=newcomer).provider == OIDC_ID
    assert newcomer.email == "", "the address stays with the account that holds it"
    carol.refresh_from_db()
    assert carol.has_usable_password()
    token = httpx.post(f"{social_site.api}/api/auth/token/", json={"username": "carol", "password": TEST_PASSWORD})
    assert token.status_code == 200


def test_a_provider_name_that_looks_like_an_existing_user_is_not_taken(social_site, django_user_model):
    login = social_login_over_http(social_site, "b\u043eb")  # bob, with a Cyrillic o

    signed_in = me(social_site, login.pair)
    assert signed_in["username"] not in ("bob", "b\u043eb")
    from accounts.usernames import username_skeleton

    assert username_skeleton(signed_in["username"]) != username_skeleton("bob")
    assert django_user_model.objects.filter(username="bob").count() == 1


def test_denied_consent_returns_to_the_login_page_with_a_message(social_site, django_user_model):
    users_before = django_user_model.objects.count()
    login = social_login_over_http(social_site, "sam", allow=False)

    assert login.pair is None
    assert login.callback.status_code == 302 and login.callback.headers["location"] == "/login/"
    assert "Sign-in with Local ID was cancelled" in login_page_messages(login.client, social_site)
    assert django_user_model.objects.count() == users_before


def test_a_callback_with_a_forged_state_signs_nobody_in(social_site, django_user_model):
    users_before = django_user_model.objects.count()

    def forge(url: str) -> str:
        return url.replace(f"state={query_of(url)['state']}", "state=forged-by-another-site")

    login = social_login_over_http(social_site, "sam", deliver=forge)

    assert login.pair is None
    assert login.callback.status_code == 302 and login.callback.headers["location"] == "/login/"
    assert "could not be verified" in login_page_messages(login.client, social_site)
    assert django_user_model.objects.count() == users_before


def test_a_callback_delivered_to_another_browser_is_refused(social_site, django_user_model):
    """A genuine code and state, but opened in a browser that did not start the login (login CSRF)."""
    delivered = {}

    def steal(url: str) -> str:
        delivered["url"] = url
        return url.replace("state=", "state=x")  # the starting browser does not complete it

    social_login_over_http(social_site, "sam", deliver=steal)
    other = httpx.Client(timeout=15)
    answer = other.get(delivered["url"])

    assert answer.status_code == 302 and answer.headers["location"] == "/login/"
    assert "could not be verified" in login_page_messages(other, social_site)
    assert not django_user_model.objects.filter(username="sam").exists()


def test_a_provider_that_is_down_gives_a_clear_message_on_the_login_page_not_a_500(chat_users, daphne_factory):
    port = free_port()
    site, api = f"http://localhost:{port}", f"http://127.0.0.1:{port}"
    nothing_there = f"http://127.0.0.1:{free_port()}/o"
    server = daphne_factory(port=port, SITE_ORIGIN=site, API_ORIGIN=api, FRONTEND_ORIGINS=site,
                            **social_env(nothing_there))  # fmt: skip
    client = httpx.Client(timeout=30)
    page = client.get(f"{site}/login/")
    assert "Sign in with Local ID" in page.text

    from tests.social.conftest import parse_page

    action, fields = next((a, f) for a, f in parse_page(page.text).forms if "/accounts/oidc/" in a)
    answer = client.post(site + action, data=fields)

    assert answer.status_code == 302 and answer.headers["location"] == "/login/"
    text = login_page_messages(client, SocialSite(server, site, api))
    assert "Local ID could not be reached" in text and "log in with your password" in text
    # A callback arriving while the provider is down (the token exchange fails) ends the same way.
    late = client.get(f"{callback_url(site)}?code=abc&state=unknown")
    assert late.status_code == 302 and late.headers["location"] == "/login/"
    assert "Traceback" not in server.log()


def test_the_admin_shows_the_identities_linked_to_a_user(social_site, django_user_model, client):
    login = social_login_over_http(social_site, "sam")
    sam_id = me(social_site, login.pair)["id"]
    admin = django_user_model.objects.create_superuser("root", "root@example.test", TEST_PASSWORD)
    client.force_login(admin)

    change = client.get(f"/admin/auth/user/{sam_id}/change/")
    assert change.status_code == 200
    html = change.content.decode()
    assert "social account" in html.lower() and f">{OIDC_ID}<" in html
    listing = client.get("/admin/auth/user/").content.decode()
    assert "Linked identities" in listing and f">{OIDC_ID}</td>" in listing
    assert client.get("/admin/socialaccount/socialaccount/").status_code == 200
