"""Members in the page, with two or three people in Chromium: the owner adds (searching names) and removes
members of a private room while the removed person is watching, everyone can leave (the oldest member
takes over), the user directory opens a DM, and "@" completes member names in the message box. The
conftest fails each test on any console error, failed request or CSP violation."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import log_in, save_screenshot

pytestmark = [pytest.mark.live, pytest.mark.browser]


@pytest.fixture
def crew(chat_users, make_user):
    """carol (also in the lobby) and a private room "Crew" owned by alice with bob; made before Playwright."""
    from chat import services

    carol = make_user("carol")
    make_user("cassidy")
    services.room_join(room=chat_users["room"], user=carol)
    room = services.room_create(creator=chat_users["alice"], name="Crew", slug="crew", is_private=True)
    services.room_member_add(room=room, actor=chat_users["alice"], username="bob")
    return room


def open_room(page, site, slug: str) -> None:
    page.goto(f"{site.site}/rooms/{slug}/")
    page.wait_for_selector("[data-connection][data-state=connected]")


def alice_and_bob_in(browser_page, site, slug: str) -> tuple:
    """alice's and bob's pages, each logged in and connected in room ``slug``."""
    pages = []
    for name in ("alice", "bob"):
        page, _ = browser_page()
        log_in(page, site, name)
        pages.append(page)
    for page in pages:
        open_room(page, site, slug)
    return pages[0], pages[1]


def members(page) -> list[str]:
    return page.locator("[data-member-list] [data-member]").evaluate_all("nodes => nodes.map(n => n.dataset.member)")


def test_owner_adds_and_removes_members_while_they_watch_and_anyone_can_leave(crew, split_site, browser_page):
    alice, _ = browser_page()
    bob, bob_log = browser_page()
    carol, _ = browser_page()
    for page, name in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        log_in(page, split_site, name)
    open_room(alice, split_site, "crew")
    open_room(bob, split_site, "crew")

    alice.locator("[data-member=bob]").wait_for()
    assert members(alice) == ["alice", "bob"]
    assert alice.locator("[data-member=alice] .tag").inner_text() == "owner"
    # Only the owner manages members; everyone may leave.
    bob.locator("[data-member=alice]").wait_for()
    assert bob.locator("[data-member-add]").is_hidden() and bob.locator("[data-remove]").count() == 0
    assert bob.get_by_role("button", name="Leave room").is_visible()

    alice.get_by_label("Add a member").fill("ca")
    alice.get_by_role("button", name="Add cassidy").wait_for()
    alice.get_by_role("button", name="Add carol").click()
    alice.locator("[data-member=carol]").wait_for()
    assert members(alice) == ["alice", "bob", "carol"]
    save_screenshot(alice, "members-panel")
    # Others' panels follow: carol coming online shows on bob's presence list, and his panel reads again.
    open_room(carol, split_site, "crew")
    bob.locator("[data-member=carol]").wait_for()

    # Removing bob ends his live subscription at once: his page says so and stops receiving.
    alice.get_by_role("button", name="Remove bob").click()
    alice.locator("[data-member=bob]").wait_for(state="detached")
    bob.locator(".toast", has_text="you are no longer a member of crew").wait_for()
    # His page stops there: no sending, no reconnecting into the room, no request about it (it would be a 404),
    # though the read marker, the members panel and mention completion all have timers of their own.
    assert bob.get_by_label("Message to").is_disabled()
    assert bob.locator("[data-connection]").inner_text() == "you are no longer a member of crew"
    asked = []
    bob.on("request", lambda request: "/api/rooms/crew/" in request.url and asked.append(request.url))
    bob.evaluate("() => { window.dispatchEvent(new Event('focus')); }")
    bob.evaluate("() => { document.dispatchEvent(new Event('visibilitychange')); }")
    bob.locator("[data-members-error]", has_text="you are no longer a member of crew").wait_for()
    alice.get_by_label("Message to").fill("after bob left")
    alice.get_by_role("button", name="Send").click()
    alice.locator(".message[data-id] .body", has_text="after bob left").wait_for()
    carol.locator(".message[data-id] .body", has_text="after bob left").wait_for()
    assert bob.locator(".message .body", has_text="after bob left").count() == 0
    assert asked == []
    assert bob.reload().status == 404  # the room is gone for him now
    bob_log.forgive("/rooms/crew/")  # provoked on purpose

    # The owner leaves: the page goes back to the room list, and carol (the oldest member left) owns it.
    alice.once("dialog", lambda dialog: dialog.accept())
    alice.get_by_role("button", name="Leave room").click()
    alice.wait_for_url(f"{split_site.site}/")
    alice.locator("[data-room-list].grouped").wait_for()
    assert alice.locator("[data-room-list] [data-slug=crew]").count() == 0
    carol.reload()
    carol.locator("[data-member=carol] .tag", has_text="owner").wait_for()
    assert carol.locator("[data-member-add]").is_visible()


def test_nothing_about_the_room_goes_out_once_the_server_has_the_leave(crew, split_site, browser_page):
    """The room page asks about its room on timers of its own: the members panel reads it again half a
    second after someone goes offline, and the read marker is sent when the window has focus again (as when
    the Leave dialog closes). A leave the server has done but not yet answered must hold both: the room is
    a 404 for this user by then (CI saw each of them land after the leave)."""
    alice, bob = alice_and_bob_in(browser_page, split_site, "crew")
    alice.locator("[data-presence] [data-user=bob]").wait_for()
    # alice looks away: bob's message stays unread on her side until her window has focus again.
    alice.evaluate("() => { document.hasFocus = () => false; }")
    bob.get_by_label("Message to").fill("are you leaving?")
    bob.get_by_role("button", name="Send").click()
    alice.locator(".message[data-id] .body", has_text="are you leaving?").wait_for()
    after_leave = []

    def about_the_room(request):
        if "/api/rooms/crew/" in request.url and not request.url.endswith("/leave/"):
            after_leave.append(f"{request.method} {request.url}")

    def slow_leave(route):
        response = route.fetch()  # the server has the leave from here on
        alice.on("request", about_the_room)
        alice.evaluate("() => { delete document.hasFocus; window.dispatchEvent(new Event('focus')); }")
        alice.wait_for_timeout(2_000)  # both timers (0.5 s and 0.3-1.5 s) would have gone off by now
        route.fulfill(response=response)

    alice.route("**/api/rooms/crew/leave/", slow_leave)
    bob.goto(f"{split_site.site}/")  # bob goes offline here: alice's presence list changes
    alice.locator("[data-presence] [data-user=bob]").wait_for(state="detached")
    alice.once("dialog", lambda dialog: dialog.accept())
    alice.get_by_role("button", name="Leave room").click()
    alice.wait_for_url(f"{split_site.site}/")
    assert after_leave == []


def test_user_directory_opens_a_direct_conversation(crew, split_site, browser_page):
    alice, _ = browser_page()
    carol, _ = browser_page()
    log_in(alice, split_site, "alice")
    log_in(carol, split_site, "carol")
    directory = alice.locator("[data-user-directory]")
    directory.locator("[data-user=bob]").wait_for()
    assert directory.locator("[data-user=alice]").count() == 0  # not oneself
    alice.get_by_label("Username").fill("ca")
    directory.locator("[data-user=bob]").wait_for(state="detached")
    assert directory.locator("[data-user]").evaluate_all("ns => ns.map(n => n.dataset.user)") == ["carol", "cassidy"]
    alice.get_by_label("Username").fill("zz")
    directory.get_by_text("Nobody by that name.").wait_for()
    alice.get_by_label("Username").fill("car")
    directory.locator("[data-user=carol]").wait_for()
    assert directory.locator("[data-user=cassidy]").count() == 0
    save_screenshot(alice, "user-directory")
    alice.get_by_role("button", name="Message carol").click()
    alice.wait_for_url(re.compile(r"/rooms/dm-\d+-\d+/$"))
    alice.wait_for_selector("[data-connection][data-state=connected]")
    alice.get_by_label("Message to").fill("hello from the directory")
    alice.get_by_role("button", name="Send").click()
    carol.goto(alice.url)
    carol.locator(".message[data-id] .body", has_text="hello from the directory").wait_for()
    # A direct conversation keeps its two people: no leave, no adding.
    assert carol.locator("[data-leave-room]").is_hidden() and carol.locator("[data-member-add]").is_hidden()


def test_at_completes_member_names_with_the_keyboard(crew, split_site, browser_page):
    alice, bob = alice_and_bob_in(browser_page, split_site, "lobby")
    box = alice.get_by_label("Message to")
    suggestions = alice.locator("#mention-suggestions")

    box.press_sequentially("hi @")
    suggestions.locator("[data-mention=bob]").wait_for()
    names = suggestions.locator("[role=option]").evaluate_all("ns => ns.map(n => n.dataset.mention)")
    assert names == ["bob", "carol"]  # members only (cassidy is not in the lobby), not oneself
    box.press("Escape")
    suggestions.wait_for(state="hidden")

    box.press_sequentially("c")
    suggestions.locator("[data-mention=carol]").wait_for()
    assert suggestions.locator("[role=option]").count() == 1
    box.press("Backspace")
    suggestions.locator("[data-mention=bob]").wait_for()
    box.press("ArrowDown")
    assert suggestions.locator("[aria-selected=true]").get_attribute("data-mention") == "carol"
    box.press("ArrowUp")
    save_screenshot(alice, "mention-autocomplete")
    box.press("Enter")  # picks bob; does not send
    suggestions.wait_for(state="hidden")
    assert box.input_value() == "hi @bob "
    assert alice.locator(".message[data-id]").count() == 0

    box.press_sequentially("and @ca")
    suggestions.locator("[data-mention=carol]").wait_for()
    box.press("Tab")
    assert box.input_value() == "hi @bob and @carol "
    box.press("Enter")  # the list is closed: Enter sends as always
    bob.locator(".message[data-id] .body", has_text="hi @bob and @carol").wait_for()
