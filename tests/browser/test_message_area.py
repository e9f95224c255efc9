"""The room page's message area in Chromium (issue 20): formatting that never turns user text into HTML
(javascript: links, HTML in code, nested markup), grouping, day separators and relative times, the
"new messages" divider and the read marker, "seen" in a direct room, and with two users side by side:
edit, delete, reactions and replies applied live on the other page. The conftest fails each test on
any console error, failed request or CSP violation."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request

import pytest

from tests.browser.conftest import log_in, save_screenshot
from tests.browser.test_chat import message, open_room, send

pytestmark = [pytest.mark.live, pytest.mark.browser]

HOSTILE = [
    "javascript:alert(1) and [x](javascript:alert(1)) and JaVaScRiPt:alert(1)",
    "<img src=x onerror=\"document.title='xss'\"> <script>document.title='xss'</script>",
    "```html\n<script>document.title='xss'</script><b>not bold</b>\n```",
    "inline `<img src=x onerror=alert(1)>` and **bold _both_ http://ok.example/a_b** and *a **b* c**",
    'http://ok.example/"onmouseover="alert(1) data:text/html,<b>x</b>',
]


def rendered_elements(page) -> list[dict]:
    """Every element inside message bodies: tag and attributes."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.messages .body *')].map((e) => ({
            tag: e.tagName.toLowerCase(),
            attrs: Object.fromEntries([...e.attributes].map((a) => [a.name, a.value])),
        }))"""
    )


def assert_only_safe_elements(elements: list[dict]) -> None:
    allowed = {"a", "code", "pre", "strong", "em"}
    for element in elements:
        assert element["tag"] in allowed, element
        if element["tag"] == "a":
            assert element["attrs"]["href"].startswith(("http://", "https://")), element
            assert element["attrs"]["rel"] == "noopener noreferrer"
            assert element["attrs"]["target"] == "_blank"
            assert set(element["attrs"]) == {"href", "rel", "target"}, element
            assert '"' not in element["attrs"]["href"]
        elif element["tag"] == "code":
            assert set(element["attrs"]) <= {"data-language"}, element
        else:
            assert element["attrs"] == {}, element


def test_hostile_message_text_is_rendered_as_text_with_only_safe_links(split_site, browser_page):
    alice, _ = browser_page()
    bob, _ = browser_page()
    dialogs: list[str] = []
    for page in (alice, bob):
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log_in(alice, split_site, "alice")
    log_in(bob, split_site, "bob")
    open_room(alice, split_site)
    open_room(bob, split_site)
    for text in HOSTILE:
        send(alice, text)
    message(bob, "data:text/html").wait_for()
    for page in (alice, bob):
        elements = rendered_elements(page)
        assert_only_safe_elements(elements)
        assert page.locator(".messages script, .messages img, .messages b").count() == 0
        bodies = page.locator(".message[data-id] .body")
        assert bodies.nth(0).inner_text() == HOSTILE[0]  # no link made of a javascript: URL
        assert bodies.nth(0).locator("a").count() == 0
        assert bodies.nth(1).inner_text() == HOSTILE[1]
        block = bodies.nth(2).locator("pre > code")
        assert block.inner_text() == "<script>document.title='xss'</script><b>not bold</b>"
        assert block.get_attribute("data-language") == "html"
        inline = bodies.nth(3)
        assert inline.locator("code").inner_text() == "<img src=x onerror=alert(1)>"
        assert inline.locator("strong em").inner_text() == "both"
        assert inline.locator("strong a").get_attribute("href") == "http://ok.example/a_b"
        assert inline.locator("em").nth(1).inner_text() == "a **b"  # crossed markup: the inner opener is text
        link = bodies.nth(4).locator("a")
        assert link.count() == 1 and link.get_attribute("href") == "http://ok.example/"
        assert "xss" not in page.title()
    assert dialogs == []
    save_screenshot(bob, "message-formatting")


def test_formatter_builds_only_whitelisted_nodes_for_hostile_input(split_site, browser_page):
    """ChatFormat.format on the page itself (real DOM): tags, attributes and text for tricky inputs."""
    page, _ = browser_page()
    log_in(page, split_site, "alice")
    open_room(page, split_site)
    cases = [
        "javascript:alert(1)",
        "<svg onload=alert(1)>",
        "```\n</code></pre><img src=x onerror=alert(1)>\n```",
        "**<i>x</i>**",
        "_*`<b>`*_",
        "http://a.example/<script>",
        "https://a.example/x?y=1&z=<b>2</b>",
        "***deep*** __init__ snake_case",
        "`unclosed <b>",
    ]
    result = page.evaluate(
        """(cases) => cases.map((text) => {
            const box = document.createElement('div');
            box.append(window.ChatFormat.format(text, document));
            return {
                text: box.textContent,
                elements: [...box.querySelectorAll('*')].map((e) => ({
                    tag: e.tagName.toLowerCase(),
                    attrs: Object.fromEntries([...e.attributes].map((a) => [a.name, a.value])),
                })),
            };
        })""",
        cases,
    )
    for text, out in zip(cases, result, strict=True):
        assert_only_safe_elements(out["elements"])
        assert "<" not in "".join(e["attrs"].get("href", "") for e in out["elements"]), text
    assert result[0]["elements"] == []
    assert result[1] == {"text": "<svg onload=alert(1)>", "elements": []}
    assert result[2]["text"] == "</code></pre><img src=x onerror=alert(1)>"
    assert [e["tag"] for e in result[3]["elements"]] == ["strong"]
    assert [e["tag"] for e in result[4]["elements"]] == ["em", "em", "code"]
    assert result[5]["elements"][0]["attrs"]["href"] == "http://a.example/"
    assert [e["tag"] for e in result[7]["elements"]] == ["strong", "em"]
    assert result[7]["text"] == "deep __init__ snake_case"
    assert result[8] == {"text": "`unclosed <b>", "elements": []}


@pytest.fixture
def lobby_history(chat_users):
    """Yesterday: two messages of alice; today: one of bob, then three of alice in a row; bob has read
    up to his own message, so the three of alice are new for him."""
    from chat import services
    from chat.models import Message

    room, alice, bob = chat_users["room"], chat_users["alice"], chat_users["bob"]
    now = dt.datetime.now(dt.UTC)
    yesterday = now - dt.timedelta(days=1)
    ids = {}
    for name, author, body, when in [
        ("y1", alice, "yesterday one", yesterday),
        ("y2", alice, "yesterday two", yesterday + dt.timedelta(seconds=30)),
        ("b1", bob, "bob today", now - dt.timedelta(minutes=20)),
        ("a1", alice, "new one", now - dt.timedelta(minutes=3)),
        ("a2", alice, "new two", now - dt.timedelta(minutes=2)),
        ("a3", alice, "new three", now - dt.timedelta(minutes=2)),
    ]:
        msg, _ = services.message_create(room=room, author=author, body=body)
        Message.objects.filter(pk=msg.pk).update(created=when)
        ids[name] = msg.pk
    services.room_mark_read(room=room, user=bob, message_id=ids["b1"])
    return ids


def room_detail(site, page, slug: str = "lobby") -> dict:
    token = page.evaluate("() => JSON.parse(localStorage.getItem('chat.jwt')).access")
    request = urllib.request.Request(f"{site.api}/api/rooms/{slug}/", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def wait_for_read_marker(site, page, expected: int) -> None:
    """Poll the room detail (bounded) until the caller's read marker is ``expected``."""
    seen = None
    for _ in range(40):
        seen = room_detail(site, page)["last_read_message_id"]
        if seen == expected:
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"read marker {seen}, expected {expected}")


def test_grouping_day_separators_relative_times_and_the_new_messages_divider(lobby_history, split_site, browser_page):
    ids = lobby_history
    bob, _ = browser_page(viewport={"width": 1200, "height": 900})
    log_in(bob, split_site, "bob")
    open_room(bob, split_site)
    items = bob.locator(".messages > li")
    items.last.wait_for()
    kinds = bob.evaluate(
        """() => [...document.querySelectorAll('.messages > li')].map((li) =>
            li.classList.contains('message') ? `${li.dataset.id}${li.classList.contains('grouped') ? '+' : ''}`
            : li.classList.contains('new-divider') ? 'NEW' : `DAY:${li.textContent}`)"""
    )
    assert kinds == [
        "DAY:Yesterday", str(ids["y1"]), f"{ids['y2']}+",
        "DAY:Today", str(ids["b1"]), "NEW", str(ids["a1"]), f"{ids['a2']}+", f"{ids['a3']}+",
    ]  # fmt: skip
    time = bob.locator(f".message[data-id='{ids['a1']}'] time")
    assert time.inner_text() == "3 min ago"
    assert time.get_attribute("title")  # the exact time on hover
    assert bob.locator(f".message[data-id='{ids['b1']}'] time").inner_text() == "20 min ago"
    # Relative times are refreshed (every 30 s): a time made 50 minutes older reads "50 min ago" on its own.
    time.evaluate("(node) => { node.dateTime = new Date(Date.now() - 50 * 60_000 - 5_000).toISOString(); }")
    bob.wait_for_function(
        f"() => document.querySelector(\".message[data-id='{ids['a1']}'] time\").textContent === '50 min ago'",
        timeout=45_000,
    )
    # Bob sees everything (a tall window): his read marker moves to the newest message.
    wait_for_read_marker(split_site, bob, ids["a3"])
    save_screenshot(bob, "message-divider")


def test_the_read_marker_waits_until_messages_are_scrolled_into_view(chat_users, split_site, browser_page):
    alice, _ = browser_page()
    bob, _ = browser_page(viewport={"width": 1200, "height": 700})
    log_in(alice, split_site, "alice")
    log_in(bob, split_site, "bob")
    open_room(alice, split_site)
    for i in range(25):
        send(alice, f"line {i}\nsecond row\nthird row")
    message(alice, "line 24").wait_for()
    # Bob opens the room at the "new messages" divider (all 25 are new): the newest are below the fold.
    open_room(bob, split_site)
    message(bob, "line 24").wait_for(state="attached")
    newest = int(bob.locator(".message[data-id]").last.get_attribute("data-id"))
    assert bob.locator("[data-new-divider]").is_visible()
    bob.wait_for_timeout(2500)
    before = room_detail(split_site, bob)["last_read_message_id"]
    bob.locator(".messages").evaluate("(list) => { list.scrollTop = list.scrollHeight; }")
    wait_for_read_marker(split_site, bob, newest)
    assert before < newest, "the marker did not move while the newest messages were out of view"


@pytest.fixture
def direct_room(chat_users):
    from chat import services

    room, _ = services.direct_room_get_or_create(user=chat_users["alice"], other_username="bob")
    return room.slug


def test_seen_appears_under_the_last_message_the_other_member_read(direct_room, split_site, browser_page):
    alice, _ = browser_page()
    bob, _ = browser_page()
    log_in(alice, split_site, "alice")
    log_in(bob, split_site, "bob")
    open_room(alice, split_site, slug=direct_room)
    send(alice, "are you there?")
    message(alice, "are you there?").wait_for()
    send(alice, "second question")
    message(alice, "second question").wait_for()
    assert alice.locator("[data-seen]").count() == 0
    open_room(bob, split_site, slug=direct_room)
    message(bob, "second question").wait_for()
    seen = alice.locator(".message.mine [data-seen]")
    seen.wait_for()
    assert seen.count() == 1
    assert "second question" in alice.locator(".message.mine", has=alice.locator("[data-seen]")).inner_text()
    # After a reload "seen" comes from the room detail.
    alice.reload()
    alice.wait_for_selector("[data-connection][data-state=connected]")
    alice.locator(".message.mine", has_text="second question").locator("[data-seen]").wait_for()
    save_screenshot(alice, "message-seen")


def two_in_the_lobby(split_site, browser_page, logs: list | None = None, bob_frames: list | None = None):
    alice, alice_log = browser_page()
    bob, bob_log = browser_page()
    if bob_frames is not None:  # STOMP frames bob's page sends, from its first connection on
        bob.on("websocket", lambda ws: ws.on("framesent", lambda payload: bob_frames.append(str(payload))))
    for page, name in ((alice, "alice"), (bob, "bob")):
        log_in(page, split_site, name)
        open_room(page, split_site)
    if logs is not None:
        logs += [alice_log, bob_log]
    return alice, bob


def item(page, text: str):
    return page.locator(".message[data-id]", has=page.locator(".body", has_text=text))


def test_edit_and_delete_show_live_on_the_other_page(split_site, browser_page):
    alice, bob = two_in_the_lobby(split_site, browser_page)
    send(alice, "first draft with a typo")
    send(bob, "an answer")
    message(bob, "first draft").wait_for()
    message(alice, "an answer").wait_for()
    # Only the author edits; bob is a member, not the owner, so he cannot delete alice's message.
    assert item(bob, "first draft").locator("[data-action=edit]").count() == 0
    assert item(bob, "first draft").locator("[data-action=delete]").count() == 0
    # alice created the room: as its owner she may delete bob's message, but not edit it.
    assert item(alice, "an answer").locator("[data-action=edit]").count() == 0
    assert item(alice, "an answer").locator("[data-action=delete]").count() == 1

    mine = item(alice, "first draft")
    mine.hover()
    mine.locator("[data-action=edit]").click()
    editor = mine.get_by_label("Edit message")
    editor.fill("final text with **bold**")
    editor.press("Enter")
    edited = bob.locator(".message[data-id]", has=bob.locator(".body strong", has_text="bold"))
    edited.wait_for()
    assert edited.locator(".body").inner_text() == "final text with bold"
    assert edited.locator(".edited").inner_text() == "(edited)"
    alice.locator(".message[data-id] .edited").wait_for()
    assert alice.locator(".edit-form").count() == 0

    # Escape cancels an edit without saving.
    mine = item(alice, "final text")
    mine.hover()
    mine.locator("[data-action=edit]").click()
    mine.get_by_label("Edit message").fill("never saved")
    mine.get_by_label("Edit message").press("Escape")
    assert alice.locator(".edit-form").count() == 0
    assert mine.locator(".body").inner_text() == "final text with bold"

    # Delete (confirmed): a tombstone on both pages, no text, no actions.
    alice.once("dialog", lambda dialog: dialog.accept())
    mine.hover()
    mine.locator("[data-action=delete]").click()
    tombstone = bob.locator(".message.deleted[data-id]")
    tombstone.wait_for()
    assert tombstone.locator(".body").inner_text() == "message deleted"
    assert tombstone.locator(".author").inner_text() == "alice"
    assert tombstone.locator(".actions").count() == 0
    alice.locator(".message.deleted[data-id]").wait_for()
    assert "final text" not in bob.locator(".messages").inner_text()
    # Dismissing the confirmation keeps the message.
    alice.once("dialog", lambda dialog: dialog.dismiss())
    answer = item(alice, "an answer")
    answer.hover()
    answer.locator("[data-action=delete]").click()
    alice.wait_for_timeout(500)
    assert item(bob, "an answer").count() == 1 and bob.locator(".message.deleted").count() == 1
    save_screenshot(bob, "message-edit-delete")
    # After a reload, history shows the same.
    bob.reload()
    bob.wait_for_selector("[data-connection][data-state=connected]")
    assert bob.locator(".message.deleted[data-id] .body").inner_text() == "message deleted"


def test_reactions_toggle_with_counts_and_names_on_both_pages(split_site, browser_page):
    alice, bob = two_in_the_lobby(split_site, browser_page)
    send(alice, "lunch at noon?")
    target = item(bob, "lunch at noon?")
    target.wait_for()
    target.hover()
    target.locator("[data-action=react]").click()
    bob.get_by_role("button", name="React with 👍").click()
    chip = item(alice, "lunch at noon?").locator(".reaction[data-emoji='👍']")
    chip.wait_for()
    assert chip.inner_text().replace(" ", "") == "👍1"
    assert chip.get_attribute("title") == "bob reacted with 👍"
    assert chip.get_attribute("aria-pressed") == "false"
    # alice adds hers by clicking the chip: 2, both names, pressed for her.
    chip.click()
    bob_chip = target.locator(".reaction[data-emoji='👍']")
    bob_chip.locator(".count", has_text="2").wait_for()
    assert bob_chip.get_attribute("title") == "bob, alice reacted with 👍"
    assert chip.get_attribute("aria-pressed") == "true"
    # A second emoji from the picker, then bob takes his 👍 back.
    target.hover()
    target.locator("[data-action=react]").click()
    bob.get_by_role("button", name="React with 🎉").click()
    item(alice, "lunch at noon?").locator(".reaction[data-emoji='🎉']").wait_for()
    bob_chip.click()
    chip.locator(".count", has_text="1").wait_for()
    assert chip.get_attribute("title") == "alice reacted with 👍"
    save_screenshot(alice, "message-reactions")
    # History after a reload shows the same reactions.
    alice.reload()
    alice.wait_for_selector("[data-connection][data-state=connected]")
    chips = item(alice, "lunch at noon?").locator(".reaction")
    assert [c.get_attribute("data-emoji") for c in chips.all()] == ["👍", "🎉"]


@pytest.fixture
def long_lobby(chat_users):
    """80 messages of alice, so the first is not in the room page's newest page of 50."""
    from chat import services

    room, alice = chat_users["room"], chat_users["alice"]
    first, _ = services.message_create(room=room, author=alice, body="the original question")
    for i in range(79):
        services.message_create(room=room, author=alice, body=f"filler {i}")
    return first.pk


def test_reply_quotes_the_original_and_jumps_to_it_loading_history_if_needed(long_lobby, split_site, browser_page):
    alice, bob = two_in_the_lobby(split_site, browser_page)
    newest = item(bob, "filler 78")
    newest.hover()
    newest.locator("[data-action=reply]").click()
    assert "Replying to alice: filler 78" in bob.locator("[data-replying]").inner_text()
    send(bob, "a reply")
    reply = item(alice, "a reply")
    reply.wait_for()
    quote = reply.locator(".reply-quote")
    assert quote.inner_text() == "alice filler 78"
    assert bob.locator("[data-replying]").is_hidden()
    quote.click()
    target = alice.locator(".message.target[data-id]")
    target.wait_for()
    assert target.locator(".body").inner_text() == "filler 78"

    # A reply (over REST, as another client would) to a message far back in history: the quote jumps to it,
    # loading the history around it.
    token = bob.evaluate("() => JSON.parse(localStorage.getItem('chat.jwt')).access")
    request = urllib.request.Request(
        f"{split_site.api}/api/rooms/lobby/messages/",
        data=json.dumps({"body": "about your first message", "reply_to": long_lobby}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
    far = item(alice, "about your first message")
    far.wait_for()
    assert item(alice, "the original question").count() == 0
    far.locator(".reply-quote").click()
    original = alice.locator(".message.target[data-id]")
    original.locator(".body", has_text="the original question").wait_for()
    assert int(original.get_attribute("data-id")) == long_lobby
    assert original.is_visible()
    save_screenshot(alice, "message-reply-jump")
    # Back to the live end: "Load newer messages" brings the reply again.
    alice.locator("[data-load-newer]").click()
    item(alice, "about your first message").wait_for()


def test_a_page_that_was_offline_resumes_by_event_seq_and_shows_edits_deletes_and_reactions(split_site, browser_page):
    logs: list = []
    sent_frames: list[str] = []
    alice, bob = two_in_the_lobby(split_site, browser_page, logs, sent_frames)
    send(alice, "to be edited")
    send(alice, "to be deleted")
    send(alice, "to be liked")
    message(bob, "to be liked").wait_for()

    bob.context.set_offline(True)
    bob.wait_for_selector("[data-connection][data-state=disconnected]", timeout=60_000)
    mine = item(alice, "to be edited")
    mine.hover()
    mine.locator("[data-action=edit]").click()
    mine.get_by_label("Edit message").fill("edited while bob was away")
    mine.get_by_label("Edit message").press("Enter")
    alice.locator(".message[data-id] .edited").wait_for()
    alice.once("dialog", lambda dialog: dialog.accept())
    doomed = item(alice, "to be deleted")
    doomed.hover()
    doomed.locator("[data-action=delete]").click()
    alice.locator(".message.deleted[data-id]").wait_for()
    liked = item(alice, "to be liked")
    liked.hover()
    liked.locator("[data-action=react]").click()
    alice.get_by_role("button", name="React with ❤️").click()
    liked.locator(".reaction").wait_for()
    send(alice, "and a new one")
    message(alice, "and a new one").wait_for()

    bob.context.set_offline(False)
    logs[1].forgive("ERR_INTERNET_DISCONNECTED")  # bob's requests while offline failed, as they should
    bob.wait_for_selector("[data-connection][data-state=connected]", timeout=60_000)
    message(bob, "and a new one").wait_for()
    message(bob, "edited while bob was away").wait_for()
    bob.locator(".message.deleted[data-id]").wait_for()
    item(bob, "to be liked").locator(".reaction[data-emoji='❤️']").wait_for()
    assert bob.locator(".message[data-id]").count() == 4, "each message once"
    # SockJS sends STOMP frames JSON-encoded: a newline is the two characters \\ and n.
    subscribes = [f for f in sent_frames if "SUBSCRIBE" in f and "destination:/topic/rooms.lobby\\n" in f]
    assert len(subscribes) >= 2, sent_frames
    assert "since-id:" in subscribes[0], "before any event-seq is known, resume by message id"
    assert "since-seq:" in subscribes[-1], "after the reconnect, resume by event sequence"
    logs[1].forgive("ERR_INTERNET_DISCONNECTED")


def test_the_divider_moves_to_the_first_message_that_arrived_while_the_tab_was_hidden(split_site, browser_page):
    alice, bob = two_in_the_lobby(split_site, browser_page)
    send(alice, "seen while looking")
    message(bob, "seen while looking").wait_for()
    # Hide bob's tab the way the browser does (the page reads document.visibilityState).
    bob.evaluate(
        """() => {
            Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
            document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    send(alice, "while you were away")
    send(alice, "and more")
    message(bob, "and more").wait_for()
    assert bob.title().startswith("(2) ")
    following = bob.locator("[data-new-divider] + .message .body")
    assert following.inner_text() == "while you were away"
    assert bob.locator("[data-new-divider]").count() == 1
