"""Files in a room, in a real browser: alice attaches an image with the button and drops a text file on
the messages, sends them with a message, and bob sees the image inline (thumbnail, then the full image on
click) and the text file as a card with its name and size. On the file system and on moto's S3 server.
The conftest fails each test on any console error, failed request or CSP violation."""

from __future__ import annotations

import io
import secrets

import pytest
from PIL import Image

from scripts import s3server
from tests.browser.conftest import WAIT_MS, log_in, save_screenshot
from tests.conftest import OUTPUT

pytestmark = [pytest.mark.live, pytest.mark.browser]


@pytest.fixture(params=["filesystem", "s3"])
def storage_env(request, tmp_path) -> dict[str, str]:
    if request.param == "filesystem":
        return {"ATTACHMENTS_STORAGE": "filesystem", "ATTACHMENTS_ROOT": str(tmp_path / "attachments")}
    server = s3server.start(OUTPUT / f"moto-browser-{secrets.token_hex(3)}.log")
    request.addfinalizer(server.stop)
    bucket = f"browser-{secrets.token_hex(4)}"
    s3server.bucket_create(server.endpoint, bucket)
    return server.env(bucket)


@pytest.fixture
def files_site(chat_users, daphne_factory, storage_env):
    from scripts.processes import free_port
    from tests.browser.conftest import Site

    port = free_port()
    site, api = f"http://localhost:{port}", f"http://127.0.0.1:{port}"
    server = daphne_factory(port=port, SITE_ORIGIN=site, API_ORIGIN=api, FRONTEND_ORIGINS=site, **storage_env)
    return Site(server, site, api)


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def open_room(page, site) -> None:
    page.goto(f"{site.site}/rooms/lobby/")
    page.wait_for_selector("[data-connection][data-state=connected]")


def drop_text_file(page, name: str, text: str) -> None:
    """Drop a file on the message list the way a desktop drag would (a DataTransfer holding a File)."""
    transfer = page.evaluate_handle(
        """([name, text]) => { const dt = new DataTransfer();
             dt.items.add(new File([text], name, { type: "text/plain" })); return dt; }""",
        [name, text],
    )
    page.dispatch_event("[data-messages]", "dragover", {"dataTransfer": transfer})
    page.dispatch_event("[data-messages]", "drop", {"dataTransfer": transfer})


def share_image_and_file(site, alice, bob) -> None:
    """alice sends an image (the button) and a text file (dropped) with a message; bob sees both."""
    log_in(alice, site, "alice")
    log_in(bob, site, "bob")
    open_room(alice, site)
    open_room(bob, site)

    alice.set_input_files(
        "[data-upload-input]", files=[{"name": "sky.png", "mimeType": "image/png", "buffer": png(800, 600)}]
    )
    drop_text_file(alice, "notes.txt", "twelve bytes")
    alice.locator(".uploads li.done").nth(1).wait_for(timeout=WAIT_MS)
    alice.get_by_label("Message to").fill("the sky, and notes")
    alice.get_by_role("button", name="Send").click()

    sent = bob.locator(".message[data-id]", has_text="the sky, and notes")
    thumbnail = sent.locator(".attachment.image img")
    thumbnail.wait_for(timeout=WAIT_MS)
    bob.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle(), timeout=WAIT_MS
    )
    assert thumbnail.evaluate("img => img.naturalWidth") == 320  # the thumbnail, not the 800 px original
    card = sent.locator(".attachment.file")
    assert card.locator(".name").inner_text() == "notes.txt"
    assert card.locator(".size").inner_text() == "12 bytes"
    assert alice.locator(".uploads li").count() == 0, "the tray empties once the message is sent"

    save_screenshot(bob, "attachments-room")
    thumbnail.click()
    full = bob.locator(".lightbox img")
    full.wait_for(timeout=WAIT_MS)
    bob.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=full.element_handle(), timeout=WAIT_MS)
    assert full.evaluate("img => img.naturalWidth") == 800
    save_screenshot(bob, "attachments-full-image")


def test_image_and_file_reach_the_other_user(files_site, browser_page):
    alice, _ = browser_page()
    bob, _ = browser_page()
    share_image_and_file(files_site, alice, bob)
