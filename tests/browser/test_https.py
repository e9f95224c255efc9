"""Mixed content (field failure 4): an HTTPS page whose API_ORIGIN is configured as http:// carries
``<meta http-equiv="Content-Security-Policy" content="upgrade-insecure-requests">``, and the browser
upgrades every API call to https, so nothing is blocked and the console stays clean.

daphne serves the pages and the API through one self-signed TLS endpoint; API_ORIGIN names it with
http:// on purpose (the mistake ``check --deploy`` reports as chatproject.E001), so any call that was not
upgraded would hit a TLS port in plain text and fail. Chromium treats loopback addresses as trustworthy
and neither blocks nor upgrades http:// calls to them, so the API is named ``chat-api.test`` here, which
Chromium's resolver maps to 127.0.0.1 (``--host-resolver-rules``): the traffic never leaves loopback.
"""

from __future__ import annotations

import pytest

from scripts.processes import free_port
from tests.browser.conftest import log_in, save_screenshot
from tests.conftest import OUTPUT
from tests.tls import self_signed_certificate

pytestmark = [pytest.mark.live, pytest.mark.browser]
API_HOST = "chat-api.test"


@pytest.fixture
def https_site(chat_users, daphne_factory, tmp_path):
    cert, key = self_signed_certificate(tmp_path, hosts=("localhost", API_HOST))
    tls_port = free_port()
    site = f"https://localhost:{tls_port}"
    api = f"http://{API_HOST}:{tls_port}"  # http:// on purpose: the browser must upgrade it
    daphne_factory(
        extra_args=["-e", f"ssl:{tls_port}:privateKey={key}:certKey={cert}:interface=127.0.0.1"],
        SITE_ORIGIN=site,
        API_ORIGIN=api,
        FRONTEND_ORIGINS=site,
        ALLOWED_HOSTS=f"localhost,127.0.0.1,{API_HOST}",
    )
    return site, api


@pytest.fixture
def browser_args():
    return ["--host-resolver-rules=MAP chat-api.test 127.0.0.1"]


def test_https_page_carries_the_upgrade_meta_and_its_http_api_calls_are_upgraded(https_site, browser_page):
    site, api = https_site
    page, log = browser_page(ignore_https_errors=True)
    response = page.goto(site + "/login/")
    assert page.locator('meta[http-equiv="Content-Security-Policy"]').get_attribute("content") == (
        "upgrade-insecure-requests"
    )
    assert "upgrade-insecure-requests" in response.headers["content-security-policy"]

    log_in(page, site, "alice")  # the hand-over call goes to the http:// API_ORIGIN
    page.locator("[data-room-list] .group").first.wait_for()  # the room list came from the API
    page.wait_for_selector("[data-bell][data-stream=open]")  # and the notification stream is open
    assert page.evaluate("() => window.Chat.API_ORIGIN") == api

    page.goto(site + "/rooms/lobby/")
    page.wait_for_selector("[data-connection][data-state=connected]")
    save_screenshot(page, "room-https")

    tls_api = api.replace("http://", "https://")
    api_calls = [url for url in log.requests if url.startswith((api, tls_api))]
    assert any(url.startswith(f"{tls_api}/api/auth/handover/") for url in api_calls)
    assert any(url.startswith(f"{tls_api}/api/notifications/stream/") for url in api_calls)
    assert any(url.startswith(f"{tls_api}/ws/") for url in api_calls)
    assert not [url for url in api_calls if url.startswith(api)], "every http:// API call was upgraded"
    (OUTPUT / "https-requests.txt").write_text("\n".join(log.requests))
