"""The README's screenshots: a busy room on a desktop and on a phone (``make screenshots``).

Starts its own server (a fresh SQLite database under var/, daphne on a free loopback port, stopped by
PID at the end) or uses a running one (``--url``, whose users alice, bob and carol have the demo
password of ``manage.py seed_demo``; the room seeded there stays, under a new slug each run). It seeds
a room through the public routes only, as a client would: REST for messages, replies, reactions, edits
and an image attachment. A route this tree does not have yet (404/405, or the HTML error page of an
unknown route) is skipped with a warning, and a refused step or a wait that runs out only warns, so the
script keeps working while features arrive. Then Debian's Chromium (Playwright, never ``playwright
install``) opens the room as alice, with bob and carol in it too (bob typing), and writes
``docs/screenshots/room-desktop.png`` (1280x800) and ``docs/screenshots/room-phone.png`` (390x844).

    .venv/bin/python scripts/screenshots.py [--url http://localhost:8000] [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a file: make the repository importable like `python -m` does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.browser import CHROMIUM_ARGS, log_in
from scripts.processes import free_port, stop, wait_port

REPO = Path(__file__).resolve().parent.parent
logger = logging.getLogger("screenshots")
DEMO_PASSWORD = "chat-demo-pass"  # chat/management/commands/seed_demo.py
USERS = ["alice", "bob", "carol", "dave", "erin"]
VIEWER = "alice"  # whose browser is photographed
WAIT_MS = 20_000  # bounded waits, generous for a loaded machine
HTTP_TIMEOUT = 20.0
TYPING_EVERY = 3.2  # seconds between two "typing" signals of one page (chat.js sends at most one per 3 s)
RETRIES = 5  # a 429 (send budget) is retried this often, with a growing pause

DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 1}

# The conversation: (author, body, extras). extras: "reply": index of an earlier line, "image": attach the
# generated image, "react": {emoji: [users]}, "edit": the text it is edited to afterwards.
CONVERSATION: list[tuple[str, str, dict]] = [
    ("bob", "Morning! The staging deploy of the new **read markers** is done.", {"react": {"🎉": ["alice", "carol"]}}),
    ("carol", "Nice. Did the migration run cleanly on the big database?", {}),
    ("bob", "Yes, 41 s. Log: https://example.com/deploys/1842", {}),
    ("dave", "I still see the old badge on my phone, is that cached?", {}),
    ("alice", "Probably the service worker. Try a hard reload, or `Ctrl+Shift+R`.", {"reply": 3}),
    ("dave", "That was it, thanks!", {"react": {"👍": ["alice", "bob"]}}),
    ("erin", "Screenshot of the new layout on a small screen:", {"image": True}),
    ("carol", "Looks _much_ better than before. The room list drawer is a good idea.", {"react": {"❤️": ["erin"]}}),
    (
        "bob",
        "One thing: the query for unread counts is still\n```\nSELECT room_id, count(*) FROM chat_message\n"
        "WHERE id > %s GROUP BY room_id;\n```\nwe could use the marker index.",
        {},
    ),
    ("alice", "@bob agreed, let's do it in the next sprint. Can you file it?", {"reply": 8}),
    ("bob", "Filed as #214.", {"react": {"👍": ["alice"], "🚀": ["carol", "dave"]}}),
    ("erin", "Reminder: demo at 15:00, room 3B. @alice you present the phone layout?", {"edit": True}),
    ("alice", "Yes, I'll bring my phone for the live part.", {}),
]
# Messages in another room that mention the viewer: the bell shows them while the viewed room stays quiet.
ELSEWHERE = [("bob", "@alice can you look at the release notes when you have a minute?"),
             ("carol", "@alice lunch at 12:30?")]  # fmt: skip


class Skipped(Exception):
    """A route this tree does not have (yet): the step is skipped, not fatal."""


@dataclass
class Api:
    """A small JSON client of the chat API for one user."""

    base: str
    user: str
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base, timeout=HTTP_TIMEOUT)
        token = self.call("POST", "/api/auth/token/", json={"username": self.user, "password": DEMO_PASSWORD})
        self.client.headers["Authorization"] = f"Bearer {token['access']}"

    def call(self, method: str, path: str, **kwargs) -> dict:
        for attempt in range(RETRIES):
            response = self.client.request(method, path, **kwargs)
            if response.status_code == 429 and attempt < RETRIES - 1:
                time.sleep(1.0 + attempt)  # over the send budget: wait for tokens
                continue
            json_answer = response.headers.get("content-type", "").startswith("application/json")
            # No such route: a 404 or 405, or (for an unsafe method) Django's HTML CSRF page of the catch-all.
            if response.status_code in (404, 405) or (response.status_code >= 400 and not json_answer):
                raise Skipped(f"{method} {path} answered {response.status_code}")
            if response.status_code >= 400:
                detail = response.text[:300]
                raise RuntimeError(f"{self.user}: {method} {path} answered {response.status_code}: {detail}")
            return response.json() if response.content else {}
        raise RuntimeError(f"{self.user}: {method} {path} kept answering 429")


def warn(text: str) -> None:
    logger.warning(text)


@contextlib.contextmanager
def own_server() -> Iterator[str]:
    """A fresh database with the demo users, and daphne on a free port; yields the page origin."""
    var = REPO / "var"
    var.mkdir(exist_ok=True)
    database = var / f"screenshots-{os.getpid()}.sqlite3"
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chatproject.settings",
        "DATABASE_URL": f"sqlite:///{database}",
        "DEBUG": "1",
        # Pages on localhost, the API on 127.0.0.1: the same split origins as `make run`.
        "SITE_ORIGIN": f"http://localhost:{port}",
        "API_ORIGIN": f"http://127.0.0.1:{port}",
        "FRONTEND_ORIGINS": f"http://localhost:{port},http://127.0.0.1:{port}",
        "ATTACHMENTS_ROOT": str(var / f"screenshots-{os.getpid()}-attachments"),
        "AUTH_THROTTLE_RATE": "10000/min",
        "STOMP_USER_SEND_RATE": "0",  # seeding sends in a burst; 0 turns the per-user budget off
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True, cwd=REPO)
    subprocess.run([*manage, "seed_demo"], env=env, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    extra = ", ".join(repr(u) for u in USERS[3:])
    create = (
        f"from django.contrib.auth import get_user_model\nU = get_user_model()\nfor name in [{extra}]:\n"
        f"    u, new = U.objects.get_or_create(username=name)\n    u.set_password({DEMO_PASSWORD!r}); u.save()"
    )
    subprocess.run([*manage, "shell", "-c", create], env=env, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    log_path = var / f"screenshots-server-{port}.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "chatproject.daphne_server", "-b", "127.0.0.1", "-p", str(port),
             "chatproject.asgi:application"],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_port(port, server, what="daphne", timeout=60)
        yield f"http://localhost:{port}"
    finally:
        stop(server)
        for path in var.glob(f"screenshots-{os.getpid()}.sqlite3*"):
            path.unlink()
        shutil.rmtree(var / f"screenshots-{os.getpid()}-attachments", ignore_errors=True)


def api_origin(site: str) -> str:
    """The API origin a page of ``site`` uses (its <meta name="api-origin">)."""
    html = httpx.get(site + "/login/", timeout=HTTP_TIMEOUT, follow_redirects=True).text
    marker = '<meta name="api-origin" content="'
    start = html.find(marker)
    if start < 0:
        return site
    start += len(marker)
    return html[start : html.index('"', start)].rstrip("/") or site


def seed(api_base: str, image: bytes) -> str:
    """Create the busy room (and the mentions elsewhere); returns its slug."""
    apis: dict[str, Api] = {}
    for user in USERS:
        try:
            apis[user] = Api(api_base, user)
        except (RuntimeError, Skipped) as exc:
            warn(f"user {user} cannot log in ({exc}); the conversation goes on without them")
    if VIEWER not in apis:
        raise SystemExit(f"screenshots: {VIEWER} cannot log in with the demo password")
    owner = apis[VIEWER]
    slug = f"design-review-{uuid.uuid4().hex[:6]}"
    owner.call("POST", "/api/rooms/", json={"name": "Design review", "slug": slug})
    for user, api in apis.items():
        if user != VIEWER:
            api.call("POST", f"/api/rooms/{slug}/join/")
    ids: list[int | None] = []
    for author, body, extras in CONVERSATION:
        api = apis.get(author, owner)
        payload: dict = {"body": body, "client_id": uuid.uuid4().hex}
        if "reply" in extras and ids[extras["reply"]] is not None:
            payload["reply_to"] = ids[extras["reply"]]
        if extras.get("image"):
            try:
                upload = api.call("POST", f"/api/rooms/{slug}/uploads/",
                                  files={"file": ("phone-layout.png", image, "image/png")})  # fmt: skip
                payload["attachments"] = [upload["id"]]
            except (Skipped, RuntimeError) as exc:
                warn(f"no image attachment: {exc}")
        message = api.call("POST", f"/api/rooms/{slug}/messages/", json=payload)
        ids.append(message.get("id"))
        if "reply_to" in payload and not message.get("reply_to"):
            warn("replies are not in this tree yet: the reply was sent as a plain message")
    missing: set[str] = set()  # steps whose route this tree lacks: warned about once, then left out

    def step(kind: str, api: Api, method: str, path: str, body: dict) -> None:
        if kind in missing:
            return
        try:
            api.call(method, path, json=body)
        except Skipped as exc:
            missing.add(kind)
            warn(f"no {kind} (not in this tree yet): {exc}")
        except RuntimeError as exc:  # refused (a rule of the feature): the picture goes on without it
            warn(f"one of the {kind} was refused: {exc}")

    for (author, body, extras), message_id in zip(CONVERSATION, ids, strict=True):
        if not message_id:
            continue
        path = f"/api/rooms/{slug}/messages/{message_id}/"
        if extras.get("edit"):
            step("edits", apis.get(author, owner), "PATCH", path, {"body": body.replace("15:00", "15:30")})
        for emoji, users in extras.get("react", {}).items():
            for user in users:
                if user in apis:
                    step("reactions", apis[user], "POST", path + "reactions/", {"emoji": emoji})
    # Mentions in another room (general: every demo user is a member): the bell has something to show.
    for author, body in ELSEWHERE:
        if author in apis:
            with contextlib.suppress(Skipped):
                apis[author].call("POST", "/api/rooms/general/messages/", json={"body": body})
    return slug


def open_room(browser, site: str, user: str, slug: str, options: dict):
    context = browser.new_context(**options)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    log_in(page, site, user, DEMO_PASSWORD)
    page.goto(f"{site}/rooms/{slug}/")
    # Waits on what a person sees (the last line of the conversation), so that a page that renders messages
    # differently still works; a wait that runs out leaves a warning, not a failure.
    soft_wait(page.locator("[data-messages]").get_by_text(CONVERSATION[-1][1]).wait_for, "the conversation")
    soft_wait(lambda: page.wait_for_selector('[data-connection][data-state="connected"]', state="attached"),
              "the live connection")  # fmt: skip
    return page


def soft_wait(wait, what: str) -> None:
    """Run a Playwright wait; when it times out, warn and go on (the screenshot is still worth taking)."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        wait()
    except PlaywrightError as exc:
        warn(f"gave up waiting for {what}: {str(exc).splitlines()[0]}")


def make_image(browser) -> bytes:
    """A small picture to attach (drawn by the browser: no image library needed)."""
    page = browser.new_page(viewport={"width": 320, "height": 200})
    page.set_content(
        "<body style='margin:0'><div style='width:320px;height:200px;background:linear-gradient(135deg,#24344d,"
        "#1f4fa8 60%,#2a9d4b);display:grid;place-items:center;color:#fff;font:600 28px system-ui'>"
        "Phone layout ✓</div></body>"
    )
    image = page.screenshot()
    page.close()
    return image


def chromium_path(given: str | None) -> str:
    path = given or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise SystemExit("screenshots: chromium is not installed (Debian package chromium; `make system-test`)")
    return path


def take(site: str, out: Path, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            slug = seed(api_origin(site), make_image(browser))
            # Others in the room: "Online here" lists them, and one of them is typing.
            others = [open_room(browser, site, user, slug, DESKTOP) for user in ("bob", "carol")]
            last_typed = -TYPING_EVERY
            for name, options in (("room-desktop", DESKTOP), ("room-phone", PHONE)):
                page = open_room(browser, site, VIEWER, slug, options)
                online = page.locator("[data-presence]").get_by_text("carol", exact=True)  # in a drawer on a phone
                soft_wait(lambda: online.wait_for(state="attached"), "carol online")  # noqa: B023
                typing = others[0].locator("[data-send] textarea")
                # chat.js sends "typing" at most every 3 s (TYPING_SEND_EVERY_MS): let the last one age.
                time.sleep(max(0.0, last_typed + TYPING_EVERY - time.monotonic()))
                last_typed = time.monotonic()
                # A new input event: bob types again.
                soft_wait(lambda: (typing.fill(""), typing.fill(f"Sounds good, I will ({name})")), "bob's message box")  # noqa: B023
                soft_wait(lambda: page.get_by_text("bob is typing").wait_for(timeout=5000), "bob typing")  # noqa: B023
                page.locator("[data-messages]").evaluate("(list) => { list.scrollTop = list.scrollHeight; }")
                page.wait_for_timeout(300)  # the last images settle
                page.screenshot(path=str(out / f"{name}.png"))
                logger.info("wrote %s", out / f"{name}.png")
                page.context.close()
            for page in others:
                page.context.close()
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running site (pages origin) with the demo users; default: start one")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots", help="where the PNGs go")
    parser.add_argument("--chromium", help="the Chromium binary (default: Debian's chromium)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="screenshots: %(levelname)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    chromium = chromium_path(args.chromium)
    if args.url:
        take(args.url.rstrip("/"), args.out, chromium)
    else:
        with own_server() as site:
            take(site, args.out, chromium)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
