"""The room page at phone width (360 and 390 px) and on a desktop, and the quiet notifications of issue 20:
no toast for the room being viewed, and opening a room clears its mentions in every open bell.

Phone: the header stays one line, the room list opens as a drawer, the message box is on screen and
sends, the "Online here" list is out of the way until asked for, and nothing scrolls sideways.
Screenshots go to test-output/screenshots/.
"""

from __future__ import annotations

import httpx
import pytest

from tests.browser.conftest import log_in, save_screenshot
from tests.conftest import TEST_PASSWORD

pytestmark = [pytest.mark.live, pytest.mark.browser]

PHONES = {"390x844": {"width": 390, "height": 844}, "360x740": {"width": 360, "height": 740}}
DESKTOP = {"width": 1280, "height": 800}
BUSY = 40  # messages in the room: more than a phone screen holds, so the list must scroll

# Where an element is on screen (null when not rendered).
BOX = "(el) => { const r = el.getBoundingClientRect(); return r.width || r.height ? " \
      "{top: r.top, bottom: r.bottom, left: r.left, right: r.right} : null; }"  # fmt: skip
NO_SIDEWAYS_SCROLL = "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"


def token(site, username: str) -> dict:
    response = httpx.post(f"{site.api}/api/auth/token/", json={"username": username, "password": TEST_PASSWORD},
                          timeout=10)  # fmt: skip
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access']}"}


def post(site, headers: dict, slug: str, body: str) -> dict:
    response = httpx.post(f"{site.api}/api/rooms/{slug}/messages/", json={"body": body}, headers=headers, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def on_screen(page, selector: str, viewport: dict) -> bool:
    """Whether the element is rendered, visible and wholly inside the viewport."""
    locator = page.locator(selector)
    if not locator.is_visible():
        return False
    box = locator.evaluate(BOX)
    return bool(box) and box["top"] >= 0 and box["left"] >= 0 and box["bottom"] <= viewport["height"] + 0.5 \
        and box["right"] <= viewport["width"] + 0.5  # fmt: skip


def open_room(browser_page, site, username: str, viewport: dict, slug: str = "lobby", **options):
    page, log = browser_page(viewport=viewport, **options)
    log_in(page, site, username)
    page.goto(site.url(f"/rooms/{slug}/"))
    page.wait_for_selector('[data-connection][data-state="connected"]', state="attached")
    return page, log


@pytest.mark.parametrize("size", PHONES)
def test_room_page_works_at_phone_width(split_site, browser_page, size):
    viewport = PHONES[size]
    bob = token(split_site, "bob")
    for i in range(BUSY):
        post(split_site, bob, "lobby", f"message {i} " + "with some words " * (i % 4))
    page, _ = open_room(browser_page, split_site, "alice", viewport, is_mobile=True, has_touch=True)
    page.wait_for_function(f"() => document.querySelectorAll('[data-messages] .message').length >= {BUSY}")

    # The header is one line; nothing is wider than the screen.
    assert page.locator("header.top").evaluate("(el) => el.getBoundingClientRect().height") < 64
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    # The message box and the Send button are on screen, below the messages; the list scrolls by itself.
    assert on_screen(page, "[data-send] textarea", viewport)
    assert on_screen(page, "[data-send] button[type=submit]", viewport)
    assert page.evaluate("() => document.documentElement.scrollHeight <= window.innerHeight + 1")
    assert page.locator("[data-messages]").evaluate("(el) => el.scrollHeight > el.clientHeight")
    # "Online here" is out of the way: not on screen until its button opens it.
    assert not on_screen(page, "#room-presence", viewport)
    assert not on_screen(page, "#room-sidebar", viewport)
    save_screenshot(page, f"phone-room-{size}")

    # Send from the phone and see it arrive (stored and broadcast) at the bottom of the list.
    page.locator("[data-send] textarea").fill("sent from a phone")
    page.locator("[data-send] button[type=submit]").click()
    last = page.locator("[data-messages] .message[data-id]").filter(has_text="sent from a phone")
    last.wait_for()
    page.wait_for_function("""() => { const list = document.querySelector("[data-messages]");
      const item = [...list.querySelectorAll(".message[data-id]")].pop();
      const l = list.getBoundingClientRect(), r = item.getBoundingClientRect();
      return item.textContent.includes("sent from a phone") && r.bottom <= l.bottom + 1 && r.top >= l.top - 1; }""")
    assert on_screen(page, "[data-send] textarea", viewport)

    # The room list is reachable: a drawer with the rooms, closed by Escape.
    rooms = page.get_by_role("button", name="Rooms")
    assert rooms.get_attribute("aria-expanded") == "false"
    rooms.click()
    page.wait_for_function("() => document.querySelector('#room-sidebar').getBoundingClientRect().left >= 0")
    assert rooms.get_attribute("aria-expanded") == "true"
    assert on_screen(page, "#room-sidebar [data-sidebar-rooms] a", viewport)
    page.locator("#room-sidebar [data-sidebar-rooms] a", has_text="Lobby").wait_for()
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    save_screenshot(page, f"phone-rooms-drawer-{size}")
    page.keyboard.press("Escape")
    page.wait_for_function("() => document.querySelector('#room-sidebar').getBoundingClientRect().right <= 0")
    assert rooms.get_attribute("aria-expanded") == "false"

    # The online list opens on request (with its count on the button) and closes with its own button.
    online = page.locator("[data-drawer-toggle][aria-controls=room-presence]")
    online.locator("[data-drawer-count-value]", has_text="1").wait_for()
    online.click()
    page.wait_for_function(
        "() => { const r = document.querySelector('#room-presence').getBoundingClientRect();"
        " return r.right <= window.innerWidth + 0.5 && r.left >= 0; }"
    )
    page.locator("#room-presence [data-presence] li[data-user=alice]").wait_for()
    page.get_by_role("button", name="Close the online list").click()
    page.wait_for_function("() => document.querySelector('#room-presence').getBoundingClientRect().left >= innerWidth")
    assert on_screen(page, "[data-send] textarea", viewport)
    assert page.evaluate(NO_SIDEWAYS_SCROLL)


def test_room_page_keeps_three_columns_on_a_desktop(split_site, browser_page):
    page, _ = open_room(browser_page, split_site, "alice", DESKTOP)
    page.locator("[data-presence] li[data-user=alice]").wait_for()
    columns = {"rooms": "#room-sidebar", "chat": "section.chat", "online": "#room-presence"}
    boxes = {name: page.locator(selector).evaluate(BOX) for name, selector in columns.items()}
    # Side by side, in that order, all at the top of the page and on screen.
    assert boxes["rooms"]["right"] <= boxes["chat"]["left"] and boxes["chat"]["right"] <= boxes["online"]["left"]
    assert all(0 <= box["top"] < 200 and box["right"] <= DESKTOP["width"] for box in boxes.values())
    # The phone's drawer buttons do not show; the user's name does.
    assert not page.get_by_role("button", name="Rooms").is_visible()
    assert not page.locator("[data-drawer-toggle][aria-controls=room-presence]").is_visible()
    assert not page.locator("[data-drawer-close]").first.is_visible()
    page.get_by_text("Signed in as").wait_for()
    assert on_screen(page, "[data-send] textarea", DESKTOP)
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    save_screenshot(page, "desktop-room")


def test_no_toast_for_the_room_being_viewed_but_one_for_another_room(split_site, browser_page):
    bob = token(split_site, "bob")
    side = httpx.post(f"{split_site.api}/api/rooms/", json={"name": "Side"}, headers=bob, timeout=10).json()
    httpx.post(f"{split_site.api}/api/rooms/{side['slug']}/join/", headers=token(split_site, "alice"),
               timeout=10).raise_for_status()  # fmt: skip
    page, _ = open_room(browser_page, split_site, "alice", PHONES["390x844"])
    page.wait_for_selector("[data-bell][data-stream=open]")
    page.evaluate("""() => { window.__toasts = [];
      new MutationObserver((records) => { for (const r of records) for (const n of r.addedNodes)
        window.__toasts.push(n.textContent); }).observe(document.getElementById("toasts"), {childList: true}); }""")
    post(split_site, bob, "lobby", "@alice look at this, here")
    # The mention in the viewed room shows in the list (highlighted) but is read at once: no toast, no count.
    page.locator("[data-messages] .message", has_text="look at this, here").wait_for()
    post(split_site, bob, side["slug"], "@alice and this, elsewhere")
    # Notifications arrive in order: once the second one's toast is up, the first one had its chance.
    page.locator(".toast[data-kind=mention]", has_text="and this, elsewhere").wait_for()
    assert page.evaluate("() => window.__toasts.filter((t) => t.includes('look at this, here')).length") == 0
    page.wait_for_function("() => document.querySelector('[data-bell-count]').dataset.count === '1'")
    save_screenshot(page, "phone-toast-other-room")
    page.get_by_role("button", name="Notifications, 1 unread").click()
    assert page.locator("[data-bell-list] li.unread").count() == 1
    page.locator("[data-bell-list] li.unread", has_text="and this, elsewhere").wait_for()
    page.locator("[data-bell-list] li.read", has_text="look at this, here").wait_for()
    assert page.evaluate(NO_SIDEWAYS_SCROLL)


def test_opening_a_room_clears_its_mentions_in_every_open_bell(split_site, browser_page):
    bob = token(split_site, "bob")
    side = httpx.post(f"{split_site.api}/api/rooms/", json={"name": "Side"}, headers=bob, timeout=10).json()
    httpx.post(f"{split_site.api}/api/rooms/{side['slug']}/join/", headers=token(split_site, "alice"),
               timeout=10).raise_for_status()  # fmt: skip
    home, _ = browser_page(viewport=DESKTOP)
    log_in(home, split_site, "alice")  # alice on the room list: the bell counts live
    home.wait_for_selector("[data-bell][data-stream=open]")
    post(split_site, bob, "lobby", "@alice first")
    post(split_site, bob, "lobby", "@alice second")
    post(split_site, bob, side["slug"], "@alice in the side room")
    count = "(n) => document.querySelector('[data-bell-count]').dataset.count === String(n)"
    home.wait_for_function(count, arg=3)
    # A second tab of alice's opens the lobby: its two mentions are read there, and the first tab's bell
    # follows at once (the stream's read event), leaving the side room's mention.
    room = home.context.new_page()
    room.set_default_timeout(15_000)
    room.goto(split_site.url("/rooms/lobby/"))
    room.wait_for_function(count, arg=1)
    home.wait_for_function(count, arg=1)
    home.get_by_role("button", name="Notifications, 1 unread").click()
    home.locator("[data-bell-list] li.unread", has_text="in the side room").wait_for()
    assert home.locator("[data-bell-list] li.unread").count() == 1
    save_screenshot(home, "bell-after-room-opened")
    # The server agrees.
    unread = httpx.get(f"{split_site.api}/api/notifications/unread-count/", headers=token(split_site, "alice"),
                       timeout=10).json()  # fmt: skip
    assert unread == {"unread": 1}


@pytest.mark.parametrize("size", PHONES)
def test_the_other_pages_fit_a_phone_too(split_site, browser_page, size):
    viewport = PHONES[size]
    page, _ = browser_page(viewport=viewport, is_mobile=True, has_touch=True)
    log_in(page, split_site, "alice")
    for path in ("/", "/search/?q=hello"):
        page.goto(split_site.url(path))
        page.wait_for_selector("[data-bell][data-stream=open]")
        assert page.locator("header.top").evaluate("(el) => el.getBoundingClientRect().height") < 64, path
        assert page.evaluate(NO_SIDEWAYS_SCROLL), path
        assert on_screen(page, "[data-bell-button]", viewport) and on_screen(page, "[data-logout] button", viewport)
    # The bell's panel fits the screen.
    page.locator("[data-bell-button]").click()
    assert on_screen(page, "#notification-panel", viewport)
    save_screenshot(page, f"phone-search-bell-{size}")
