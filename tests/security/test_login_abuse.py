"""Password guessing (issue 16, item 5): X-Forwarded-For is trusted only as far as the configured proxies go,
and failures back off per account and address, so guessing slows down without locking the owner out."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from tests.conftest import TEST_PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


def obtain(client, username, password, **extra):
    return client.post(
        "/api/auth/token/", {"username": username, "password": password}, content_type="application/json", **extra
    )


@pytest.mark.parametrize(
    ("remote", "header", "hops", "expected"),
    [
        ("10.0.0.1", "6.6.6.6", 0, "10.0.0.1"),  # no proxy: the header is the client's own claim
        ("127.0.0.1", "6.6.6.6, 203.0.113.7", 1, "203.0.113.7"),  # nginx appended the real peer
        ("127.0.0.1", "6.6.6.6, 203.0.113.7, 10.1.1.1", 2, "203.0.113.7"),
        ("127.0.0.1", "203.0.113.7", 2, "203.0.113.7"),  # fewer entries than proxies: the leftmost
        ("127.0.0.1", None, 1, "127.0.0.1"),  # reached the server without the proxy
        ("127.0.0.1", " , ", 1, "127.0.0.1"),
    ],
)
def test_the_client_address_trusts_only_the_configured_proxy_hops(remote, header, hops, expected):
    from accounts.addresses import forwarded_client

    assert forwarded_client(remote_addr=remote, forwarded_for=header, trusted_proxies=hops) == expected


def test_a_new_forwarded_header_per_guess_does_not_escape_the_token_throttle(make_user, settings):
    settings.AUTH_THROTTLE_RATE = "20/min"
    make_user("victim")
    client = Client()
    codes = [
        obtain(client, "victim", f"guess-{i}", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").status_code for i in range(25)
    ]
    assert codes[:20] == [401] * 20 and codes[20:] == [429] * 5


def test_behind_one_proxy_the_address_nginx_appended_is_the_one_throttled(make_user, settings):
    settings.AUTH_THROTTLE_RATE = "20/min"
    settings.TRUSTED_PROXY_COUNT = 1
    make_user("victim")
    client = Client()
    spoofed = [
        obtain(client, "victim", "x", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}, 203.0.113.7").status_code
        for i in range(25)
    ]
    assert spoofed[20:] == [429] * 5
    # Other real clients (the entry nginx appended differs) are not throttled by that one.
    assert obtain(client, "victim", TEST_PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 200


def test_form_login_after_fifty_failures_with_new_forwarded_headers_is_refused(make_user, settings):
    settings.AUTH_THROTTLE_RATE = "20/min"
    make_user("victim")
    browser = Client()
    for i in range(50):
        browser.post("/login/", {"username": "victim", "password": f"guess-{i}"}, HTTP_X_FORWARDED_FOR=f"192.0.2.{i}")
    last = browser.post("/login/", {"username": "victim", "password": TEST_PASSWORD}, HTTP_X_FORWARDED_FOR="192.0.2.99")
    assert last.status_code == 429
    assert "_auth_user_id" not in browser.session


def test_token_failures_back_off_per_account_and_address_without_locking_the_owner_out(make_user, settings):
    settings.AUTH_LOCKOUT_FREE_FAILURES = 3
    make_user("victim")
    client = Client()
    attacker = {"REMOTE_ADDR": "198.51.100.1"}
    assert [obtain(client, "victim", "x", **attacker).status_code for _ in range(3)] == [401] * 3
    refused = obtain(client, "victim", TEST_PASSWORD, **attacker)  # even the right password waits now
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert refused["Cache-Control"] == "no-store"
    # The owner, from their own address, is not locked out; nor is another account from the attacker's.
    assert obtain(client, "victim", TEST_PASSWORD, REMOTE_ADDR="203.0.113.5").status_code == 200
    make_user("other")
    assert obtain(client, "other", TEST_PASSWORD, **attacker).status_code == 200


def test_form_login_failures_back_off_per_account_and_address(make_user, settings):
    settings.AUTH_LOCKOUT_FREE_FAILURES = 3
    make_user("victim")
    attacker, owner = Client(REMOTE_ADDR="198.51.100.1"), Client(REMOTE_ADDR="203.0.113.5")
    for _ in range(3):
        assert attacker.post("/login/", {"username": "victim", "password": "x"}).status_code == 200
    refused = attacker.post("/login/", {"username": "victim", "password": TEST_PASSWORD})
    assert refused.status_code == 429 and "_auth_user_id" not in attacker.session
    assert b"failed logins for this account" in refused.content and int(refused["Retry-After"]) >= 1
    assert owner.post("/login/", {"username": "victim", "password": TEST_PASSWORD}).status_code == 302


def test_the_back_off_doubles_with_each_failure_up_to_the_cap_and_a_success_clears_it(settings):
    from accounts import lockout

    settings.AUTH_LOCKOUT_FREE_FAILURES, settings.AUTH_LOCKOUT_BASE_SECONDS = 3, 2
    settings.AUTH_LOCKOUT_MAX_SECONDS = 60
    waits = [lockout.login_failed(username="Victim", address="198.51.100.1") for _ in range(9)]
    assert waits == [0, 0, 2, 4, 8, 16, 32, 60, 60]
    assert lockout.login_wait(username="victim", address="198.51.100.1") > 0  # the name's case does not matter
    assert lockout.login_wait(username="victim", address="198.51.100.2") == 0
    lockout.login_succeeded(username="victim", address="198.51.100.1")
    assert lockout.login_wait(username="victim", address="198.51.100.1") == 0
    assert lockout.login_failed(username="victim", address="198.51.100.1") == 0


def test_check_deploy_warns_when_behind_a_proxy_without_a_trusted_proxy_count(settings):
    from django.core.checks import run_checks

    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.TRUSTED_PROXY_COUNT = 0
    assert "accounts.W001" in {m.id for m in run_checks(include_deployment_checks=True)}
    settings.TRUSTED_PROXY_COUNT = 1
    assert "accounts.W001" not in {m.id for m in run_checks(include_deployment_checks=True)}


def test_a_sockjs_session_binds_the_address_the_trusted_proxy_saw_not_the_clients_claim(settings):
    """Behind nginx, a SockJS session is bound to the address nginx appended: an intruder who claims the
    victim's address in X-Forwarded-For is still another peer (daphne's --proxy-headers puts the claim,
    the header's first entry, into the scope's client)."""
    from accounts.addresses import scope_client_address
    from sockjs.binding import Binding, Client

    settings.TRUSTED_PROXY_COUNT = 1

    def scope(claimed: str, seen_by_nginx: str) -> dict:
        header = f"{claimed}, {seen_by_nginx}".encode()
        return {"client": (claimed, 40000), "headers": [(b"x-forwarded-for", header)], "query_string": b""}

    opener = Client.from_scope(scope("203.0.113.7", "203.0.113.7"), scope_client_address)
    intruder = Client.from_scope(scope("203.0.113.7", "198.51.100.9"), scope_client_address)
    assert (opener.peer, intruder.peer) == ("203.0.113.7", "198.51.100.9")
    binding = Binding(opener, bind_peer=True)
    assert binding.refusal(opener) is None
    assert binding.refusal(intruder) is not None
