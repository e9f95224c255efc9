"""Social login fixtures: the local OpenID Connect provider (tests/social/provider/, django-oauth-toolkit) on a
free 127.0.0.1 port, stopped by PID, and the app configured to use it; plus an HTTP client that walks the
whole authorization-code flow the way a browser does, for tests that need the ORM afterwards.

The browser fixtures of tests/browser/ are imported here so these tests reuse them (and their console check).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from scripts.processes import free_port, port_open
from tests.browser.conftest import (  # noqa: F401  (fixtures, registered by being imported)
    Site,
    browser_args,
    browser_page,
    chat_users,
    django_db_modify_db_settings,
    playwright_browser,
    split_site,
)
from tests.conftest import OUTPUT, REPO, TEST_PASSWORD, ServerProcess, wait_for

OIDC_ID = "local"  # SOCIAL_OIDC_ID: the callback is /accounts/oidc/local/login/callback/
OIDC_NAME = "Local ID"  # SOCIAL_OIDC_NAME: the button says "Sign in with Local ID"
CLIENT_ID = "chat-app"
CLIENT_SECRET = "chat-app-client-secret-for-tests-only"

# Provider-side users. sam exists only there; alice-id proves alice@example.test; mallory claims
# carol@example.test without the provider having verified it; the last one's name looks like bob.
PROVIDER_USERS = [
    {"username": "sam", "email": "sam@example.test", "email_verified": True},
    {"username": "alice-id", "email": "alice@example.test", "email_verified": True},
    {"username": "mallory", "email": "carol@example.test", "email_verified": False},
    # "bob" spelt with a Cyrillic o (U+043E): a look-alike of the chat user bob, new to the chat server.
    {"username": "b\u043eb", "email": "imposter@example.test", "email_verified": True},
]


@dataclass
class Provider:
    server: ServerProcess

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def issuer(self) -> str:
        return self.server.url + "/o"


@pytest.fixture
def oidc_provider_factory() -> Iterator[Callable[..., Provider]]:
    """``oidc_provider_factory(redirect_uris=[…])`` starts the local provider; stopped by PID afterwards."""
    started: list[ServerProcess] = []
    OUTPUT.mkdir(exist_ok=True)

    def start(*, redirect_uris: list[str]) -> Provider:
        port = free_port()
        db = REPO / "var" / f"test-idp-{os.getpid()}-{port}.sqlite3"
        db.parent.mkdir(exist_ok=True)
        setup = {
            "users": [{**u, "password": TEST_PASSWORD} for u in PROVIDER_USERS],
            "client": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": redirect_uris},
        }
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.social.provider.settings",
            "IDP_DB": str(db),
            "IDP_SETUP": json.dumps(setup),
            "PYTHONUNBUFFERED": "1",
        }
        log_path = OUTPUT / f"idp-{port}.log"
        argv = [sys.executable, "-m", "django", "runprovider", f"127.0.0.1:{port}"]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = ServerProcess("idp", port, process, log_path, env)
        started.append(server)

        def listening() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the test provider exited with {process.returncode}:\n{server.log()[-3000:]}")
            return port_open(port)

        wait_for(listening, timeout=30, what=f"the test OpenID Connect provider on port {port}")
        return Provider(server)

    yield start
    for server in started:
        server.stop()
        for suffix in ("", "-wal", "-shm"):
            (REPO / "var" / f"test-idp-{os.getpid()}-{server.port}.sqlite3{suffix}").unlink(missing_ok=True)


def callback_url(site: str) -> str:
    return f"{site}/accounts/oidc/{OIDC_ID}/login/callback/"


def social_env(issuer: str) -> dict[str, str]:
    return {
        "SOCIAL_OIDC_CLIENT_ID": CLIENT_ID,
        "SOCIAL_OIDC_SECRET": CLIENT_SECRET,
        "SOCIAL_OIDC_ISSUER": issuer,
        "SOCIAL_OIDC_ID": OIDC_ID,
        "SOCIAL_OIDC_NAME": OIDC_NAME,
    }


@dataclass
class SocialSite(Site):
    provider: Provider | None = None


@pytest.fixture
def social_site(chat_users, daphne_factory, oidc_provider_factory) -> SocialSite:  # noqa: F811
    """The app (pages on localhost, API on 127.0.0.1, one daphne) with the local provider as its OIDC provider."""
    port = free_port()
    site, api = f"http://localhost:{port}", f"http://127.0.0.1:{port}"
    provider = oidc_provider_factory(redirect_uris=[callback_url(site)])
    server = daphne_factory(
        port=port, SITE_ORIGIN=site, API_ORIGIN=api, FRONTEND_ORIGINS=site, **social_env(provider.issuer)
    )
    return SocialSite(server, site, api, provider)


# --- The flow over plain HTTP ---------------------------------------------------------------------------------


class _FormParser(HTMLParser):
    """The inputs of each form on a page: [(action, {name: value})]; a submit input counts only with ``submit``."""

    def __init__(self, submit: str | None) -> None:
        super().__init__()
        self.submit = submit
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.metas: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append((a.get("action") or "", {}))
        elif tag == "meta" and a.get("name"):
            self.metas[a["name"]] = a.get("content") or ""
        elif tag == "input" and self.forms and a.get("name"):
            if a.get("type") == "submit" and a["name"] != self.submit:
                return
            self.forms[-1][1][a["name"]] = a.get("value") or ""


def parse_page(html: str, submit: str | None = None) -> _FormParser:
    parser = _FormParser(submit)
    parser.feed(html)
    return parser


def follow(client: httpx.Client, response: httpx.Response, *, until: str) -> httpx.Response:
    """Follow redirects (across origins, each with its own cookies) until a URL starting with ``until``."""
    for _ in range(10):
        if str(response.url).startswith(until) and not response.is_redirect:
            return response
        assert response.is_redirect, f"{response.request.method} {response.url} → {response.status_code}"
        response = client.get(urljoin(str(response.url), response.headers["location"]))
    raise AssertionError(f"too many redirects before {until}")


@dataclass
class HttpLogin:
    client: httpx.Client
    callback: httpx.Response  # the app's answer to the provider's redirect
    pair: dict | None  # the JWT pair from the hand-over, when the login succeeded


def social_login_over_http(
    site: SocialSite, username: str, *, allow: bool = True, deliver: Callable[[str], str] | None = None
) -> HttpLogin:
    """Sign in as provider user ``username`` like a browser: the login page's POST, the provider's login and
    consent pages, the callback (``deliver`` may rewrite its URL), then the hand-over code of the next page."""
    assert site.provider is not None
    client = httpx.Client(timeout=15)
    login_page = client.get(site.url("/login/"))
    form = parse_page(login_page.text)
    action, fields = next((a, f) for a, f in form.forms if "/accounts/oidc/" in a)
    start = client.post(urljoin(site.site, action), data=fields)
    assert start.is_redirect and start.headers["location"].startswith(site.provider.issuer + "/authorize/")
    sign_in = follow(client, start, until=site.provider.url + "/login/")
    fields = parse_page(sign_in.text).forms[0][1]
    fields.update(username=username, password=TEST_PASSWORD)
    consent = follow(client, client.post(str(sign_in.url), data=fields), until=site.provider.issuer + "/authorize/")
    fields = parse_page(consent.text, submit="allow" if allow else None).forms[0][1]
    answer = client.post(str(consent.url), data=fields)
    assert answer.is_redirect and answer.headers["location"].startswith(callback_url(site.site)), answer.text[:500]
    url = answer.headers["location"]
    callback = client.get(deliver(url) if deliver else url)
    pair = None
    if callback.is_redirect and not callback.headers["location"].startswith("/login/"):
        page = follow(client, callback, until=site.site)
        code = parse_page(page.text).metas.get("jwt-handover")
        assert code, "the page after a social login carries the hand-over code"
        handed = httpx.post(f"{site.api}/api/auth/handover/", json={"code": code})
        assert handed.status_code == 200, handed.text
        pair = handed.json()
    return HttpLogin(client, callback, pair)


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def login_page_messages(client: httpx.Client, site: Site) -> str:
    """The login page's alert text (after a failed social login redirected there)."""
    page = client.get(site.url("/login/"))
    assert page.status_code == 200
    match = re.search(r"<div class=\"error\" role=\"alert\" data-login-messages>(.*?)</div>", page.text, re.S)
    return re.sub(r"<[^>]+>", " ", match.group(1)).strip() if match else ""
