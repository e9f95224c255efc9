"""Search in a real browser: the header's search box finds a message (matches marked, markup in the message
shown as text), a private room's message never shows, and the result opens the room at that message with
its context around it. The conftest fails the test on any console error, failed request or CSP violation."""

from __future__ import annotations

import pytest

from tests.browser.conftest import log_in, save_screenshot

pytestmark = [pytest.mark.live, pytest.mark.browser]
TARGET = "the quarterly <b>budget</b> spreadsheet is ready"
TARGET_IN_VIEW = """() => {
  const box = document.querySelector("[data-messages]").getBoundingClientRect();
  const r = document.querySelector(".message.target").getBoundingClientRect();
  return r.top >= box.top && r.bottom <= box.bottom;
}"""


@pytest.fixture
def history(chat_users, make_user):
    """60 messages in the lobby with the target 20th from the end; a private budget room alice is not in.
    Created before Playwright starts (see the conftest)."""
    from chat import services

    alice, bob, lobby = chat_users["alice"], chat_users["bob"], chat_users["room"]
    ids = {}
    for n in range(60):
        body = TARGET if n == 40 else f"filler message {n}"
        ids[n] = services.message_create(room=lobby, author=bob if n % 2 else alice, body=body)[0].id
    carol = make_user("carol")
    secret = services.room_create(creator=carol, name="Secret", slug="secret", is_private=True)
    services.room_member_add(room=secret, actor=carol, username="bob")
    services.message_create(room=secret, author=carol, body="the secret budget")
    return ids


def test_a_message_found_by_search_opens_in_its_room_amid_its_context(history, split_site, browser_page):
    page, _ = browser_page()
    log_in(page, split_site, "alice")
    box = page.get_by_role("searchbox", name="Search messages")
    box.fill("budgets")  # stemmed: budget
    box.press("Enter")
    page.wait_for_url("**/search/?q=budgets")
    hit = page.locator(".search-hit")
    hit.first.wait_for()
    assert hit.count() == 1, hit.all_inner_texts()  # not the private room's message
    assert hit.locator(".body").inner_text() == TARGET
    assert hit.locator("mark").all_inner_texts() == ["budget"]
    assert page.locator(".search-results b, .search-results script").count() == 0
    save_screenshot(page, "search")

    hit.get_by_role("link", name="Lobby").click()
    page.wait_for_url(f"**/rooms/lobby/?message={history[40]}")
    target = page.locator(f".message.target[data-id='{history[40]}']")
    target.wait_for()
    assert target.locator(".body").inner_text() == TARGET
    page.wait_for_function(TARGET_IN_VIEW)
    bodies = page.locator(".message[data-id] .body").all_inner_texts()
    assert bodies[bodies.index(TARGET) - 1] == "filler message 39"
    assert bodies[-1] == "filler message 59"  # the window reaches the newest message
    assert bodies[0] == "filler message 10"  # a page of 50 around it; only 19 newer, so 30 older
    assert page.locator("[data-load-older]").is_visible()
    page.wait_for_selector("[data-connection][data-state=connected]")


def test_an_old_result_opens_with_load_newer_up_to_the_live_end(history, split_site, browser_page):
    page, _ = browser_page()
    log_in(page, split_site, "alice")
    page.goto(f"{split_site.site}/rooms/lobby/?message={history[5]}")
    page.locator(f".message.target[data-id='{history[5]}']").wait_for()
    page.wait_for_selector("[data-connection][data-state=connected]")
    bodies = page.locator(".message[data-id] .body").all_inner_texts()
    assert bodies[0] == "filler message 0" and bodies[-1] == "filler message 49"  # 5 older, then 45
    assert not page.locator("[data-load-older]").is_visible()
    newer = page.get_by_role("button", name="Load newer messages")
    newer.click()
    newer.wait_for(state="hidden")
    bodies = page.locator(".message[data-id] .body").all_inner_texts()
    assert bodies[-1] == "filler message 59" and len(bodies) == len(set(bodies)) == 60
