"""First run: a page opened on an origin the API does not allow says so instead of "Loading…" forever."""

from __future__ import annotations

from scripts.processes import free_port
from tests.conftest import TEST_PASSWORD


def test_a_page_on_an_origin_the_api_refuses_says_what_is_wrong(chat_users, daphne_factory, browser_page):
    port = free_port()
    allowed, other = f"http://localhost:{port}", f"http://127.0.0.1:{port}"
    # As plain runserver was: the API allows localhost only, and the developer opens what it printed.
    daphne_factory(port=port, SITE_ORIGIN=allowed, API_ORIGIN=allowed, FRONTEND_ORIGINS=allowed)
    page, log = browser_page()
    page.goto(other + "/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(other + "/")
    page.goto(other + "/rooms/lobby/")
    placeholder = page.locator("[data-messages] .empty").filter(has_text="is not allowed by the API")
    placeholder.wait_for()
    text = placeholder.inner_text()
    assert f"this page's origin {other} is not allowed by the API at {allowed}" in text
    assert "FRONTEND_ORIGINS" in text
    page.close()
    log.problems.clear()  # the refused cross-origin requests were the point
