"""Attachments end to end through the REST API, on the file system and on a real S3 API server (moto).

Upload, message with attachments, download through the signed URL (and an expired one refused), every
refusal (non-member, too big, wrong type by content, someone else's upload, twice, other room, quota),
delete, expiry, thumbnail and EXIF stripping.
"""

from __future__ import annotations

import io
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image

from attachments.models import Attachment, attachments_storage
from attachments.services import attachments_delete_for_message, attachments_expire
from chat import services
from chat.models import Message

pytestmark = pytest.mark.django_db(transaction=True)


def png_bytes(size: tuple[int, int] = (640, 480), *, gps: bool = False, fmt: str = "PNG") -> bytes:
    """An image; with ``gps`` its EXIF carries a GPS position and a camera name."""
    image = Image.new("RGB", size, (200, 30, 30))
    out = io.BytesIO()
    if gps:
        exif = Image.Exif()
        exif[0x010F] = "SpyCam"  # Make
        exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}  # GPSInfo
        image.save(out, format=fmt, exif=exif.tobytes())
    else:
        image.save(out, format=fmt)
    return out.getvalue()


def upload(client, slug: str, data: bytes, name: str):
    return client.post(f"/api/rooms/{slug}/uploads/", {"file": SimpleUploadedFile(name, data)}, format="multipart")


def fetch(client, url: str) -> tuple[int, bytes, dict[str, str]]:
    """GET a signed URL: the file-system view through the test client, S3 over HTTP from the real server."""
    if url.startswith("http://testserver"):
        response = client.get(url.removeprefix("http://testserver"))
        body = b"".join(response.streaming_content) if response.streaming else response.content
        return response.status_code, body, {k.lower(): v for k, v in response.items()}
    response = httpx.get(url, timeout=10)
    return response.status_code, response.content, {k.lower(): v for k, v in response.headers.items()}


def test_upload_attach_and_download(storage_kind, auth_client, alice, room):
    client = auth_client(alice)
    response = upload(client, room.slug, b"hello, files\n", "notes.txt")
    assert response.status_code == 201, response.json()
    info = response.json()
    assert info["name"] == "notes.txt" and info["size"] == 13 and info["type"] == "text/plain"

    sent = client.post(f"/api/rooms/{room.slug}/messages/", {"body": "see", "attachments": [info["id"]]}, format="json")
    assert sent.status_code == 201, sent.json()
    (attached,) = sent.json()["attachments"]
    assert attached["id"] == info["id"] and attached["name"] == "notes.txt" and attached["thumbnail_url"] is None

    history = client.get(f"/api/rooms/{room.slug}/messages/").json()["results"]
    url = history[-1]["attachments"][0]["url"]
    status, body, headers = fetch(client, url)
    assert status == 200 and body == b"hello, files\n"
    assert headers["content-disposition"].startswith("attachment")
    if storage_kind == "filesystem":
        assert headers["x-content-type-options"] == "nosniff"
    assert "/attachments/" not in attachments_storage().url(Attachment.objects.get().file.name).split("?")[0] or (
        storage_kind == "s3"
    )


def test_expired_signed_url_is_refused(storage_kind, settings, auth_client, alice, room):
    client = auth_client(alice)
    settings.ATTACHMENTS_URL_TTL = 1
    info = upload(client, room.slug, b"short-lived\n", "a.txt").json()
    url = client.get(f"/api/attachments/{info['id']}/").json()["url"]
    assert fetch(client, url)[0] == 200
    if storage_kind == "s3":
        # S3 refuses a presigned URL after X-Amz-Expires; moto's server does not check expiry (nor
        # presigned signatures), so here the test can only check that the URL asks for the right lifetime.
        query = parse_qs(urlsplit(url).query)
        assert query["X-Amz-Expires"] == ["1"] and "X-Amz-Signature" in query
        return
    time.sleep(2.2)
    status, _, _ = fetch(client, url)
    assert status == 403
    fresh = client.get(f"/api/attachments/{info['id']}/").json()["url"]  # a new link works again
    assert fetch(client, fresh)[0] == 200


def test_image_gets_thumbnail_and_loses_exif_gps(storage_kind, auth_client, alice, room):
    client = auth_client(alice)
    original = png_bytes((1200, 900), gps=True, fmt="JPEG")
    assert b"SpyCam" in original and Image.open(io.BytesIO(original)).getexif().get_ifd(0x8825)
    info = upload(client, room.slug, original, "photo.jpg").json()
    assert info["type"] == "image/jpeg"
    sent = client.post(f"/api/rooms/{room.slug}/messages/", {"body": "", "attachments": [info["id"]]}, format="json")
    assert sent.status_code == 201, sent.json()
    (attached,) = sent.json()["attachments"]
    assert (attached["width"], attached["height"]) == (1200, 900)

    status, stored, headers = fetch(client, attached["url"])
    assert status == 200 and headers["content-disposition"].startswith("inline")
    assert b"SpyCam" not in stored
    exif = Image.open(io.BytesIO(stored)).getexif()
    assert not exif.get_ifd(0x8825) and 0x010F not in exif

    status, thumb, _ = fetch(client, attached["thumbnail_url"])
    assert status == 200
    assert max(Image.open(io.BytesIO(thumb)).size) == 320


def test_non_member_can_neither_upload_nor_read(storage_kind, auth_client, alice, bob, room):
    assert upload(auth_client(bob), room.slug, b"x\n", "x.txt").status_code == 404  # private: not even seen
    info = upload(auth_client(alice), room.slug, b"secret\n", "s.txt").json()
    auth_client(alice).post(
        f"/api/rooms/{room.slug}/messages/", {"body": "s", "attachments": [info["id"]]}, format="json"
    )
    assert auth_client(bob).get(f"/api/attachments/{info['id']}/").status_code == 404
    public = services.room_create(creator=alice, name="Lobby")
    refused = upload(auth_client(bob), public.slug, b"x\n", "x.txt")
    assert refused.status_code == 403 and "join" in refused.json()["detail"]


def test_too_big_file_is_refused(storage_kind, settings, auth_client, alice, room):
    settings.ATTACHMENTS_MAX_FILE_BYTES = 100_000
    response = upload(auth_client(alice), room.slug, b"a" * 150_000, "big.txt")
    assert response.status_code == 413 and response.json()["code"] == "too-large"
    assert not Attachment.objects.exists()


def test_type_is_judged_by_content_not_name(storage_kind, auth_client, alice, room):
    client = auth_client(alice)
    elf = b"\x7fELF\x02\x01\x01" + b"\x00" * 200
    response = upload(client, room.slug, elf, "cat.png")
    assert response.status_code == 415 and response.json()["code"] == "unsupported-type"
    pdf_named_png = upload(client, room.slug, b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n", "cat.png")
    assert pdf_named_png.status_code == 415 and "application/pdf" in pdf_named_png.json()["detail"]
    svg = upload(client, room.slug, b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', "a.txt")
    assert svg.status_code == 415 and "image/svg+xml" in svg.json()["detail"]
    assert not Attachment.objects.exists()


def test_svg_when_allowed_is_never_served_inline(storage_kind, settings, auth_client, alice, room):
    settings.ATTACHMENTS_ALLOWED_TYPES = [*settings.ATTACHMENTS_ALLOWED_TYPES, "image/svg+xml"]
    client = auth_client(alice)
    info = upload(client, room.slug, b'<svg xmlns="http://www.w3.org/2000/svg"><script>1</script></svg>', "a.svg")
    assert info.status_code == 201 and info.json()["type"] == "image/svg+xml"
    url = client.get(f"/api/attachments/{info.json()['id']}/").json()["url"]
    status, _, headers = fetch(client, url)
    assert status == 200 and headers["content-disposition"].startswith("attachment")
    assert headers["content-type"].startswith("application/octet-stream")


def test_someone_elses_upload_other_room_and_twice_are_refused(storage_kind, auth_client, alice, bob, room):
    services.room_member_add(room=room, actor=alice, username="bob")
    other = services.room_create(creator=alice, name="Other", is_private=True)
    alice_client, bob_client = auth_client(alice), auth_client(bob)
    mine = upload(alice_client, room.slug, b"one\n", "1.txt").json()["id"]
    elsewhere = upload(alice_client, other.slug, b"two\n", "2.txt").json()["id"]

    def send(client, ids):
        return client.post(f"/api/rooms/{room.slug}/messages/", {"body": "x", "attachments": ids}, format="json")

    stolen = send(bob_client, [mine])
    assert stolen.status_code == 404 and f"no upload {mine} of yours" in stolen.json()["detail"]
    wrong_room = send(alice_client, [elsewhere])
    assert wrong_room.status_code == 400 and "another room" in wrong_room.json()["detail"]
    assert send(alice_client, [mine]).status_code == 201
    twice = send(alice_client, [mine])
    assert twice.status_code == 409 and twice.json()["code"] == "already-attached"
    assert Message.objects.filter(room=room).count() == 1


def test_attaching_in_one_batch_twice_binds_once(storage_kind, auth_client, alice, room):
    """Two writes carrying one upload in the same batch: the first keeps it, the second is refused alone."""
    from chat.writer.store import messages_store

    info = upload(auth_client(alice), room.slug, b"race\n", "r.txt").json()
    first = services.message_prepare(room=room, author=alice, body="a", attachments=[info["id"]])
    second = services.message_prepare(room=room, author=alice, body="b", attachments=[info["id"]])
    results = messages_store(units=[[first], [second]])
    assert results[0].error is None and results[1].error is not None
    assert results[1].error.code == "already-attached"
    assert Attachment.objects.get().message.body == "a"
    assert Message.objects.count() == 1


def test_quota_is_enforced(storage_kind, settings, auth_client, alice, room):
    settings.ATTACHMENTS_USER_QUOTA_BYTES = 25
    client = auth_client(alice)
    assert upload(client, room.slug, b"0123456789\n", "a.txt").status_code == 201
    assert upload(client, room.slug, b"0123456789\n", "b.txt").status_code == 201
    over = upload(client, room.slug, b"0123456789\n", "c.txt")
    assert over.status_code == 413 and over.json()["code"] == "quota-exceeded"


def test_limits_per_message(storage_kind, settings, auth_client, alice, room):
    client = auth_client(alice)
    ids = [upload(client, room.slug, b"0123456789\n", f"{i}.txt").json()["id"] for i in range(3)]
    settings.ATTACHMENTS_MAX_PER_MESSAGE = 2
    many = client.post(f"/api/rooms/{room.slug}/messages/", {"body": "x", "attachments": ids}, format="json")
    assert many.status_code == 400 and "at most 2" in many.json()["detail"]
    settings.ATTACHMENTS_MAX_PER_MESSAGE = 10
    settings.ATTACHMENTS_MAX_MESSAGE_BYTES = 20
    heavy = client.post(f"/api/rooms/{room.slug}/messages/", {"body": "x", "attachments": ids}, format="json")
    assert heavy.status_code == 413 and heavy.json()["code"] == "too-large"


def test_delete_removes_files(storage_kind, auth_client, alice, room, django_capture_on_commit_callbacks):
    client = auth_client(alice)
    info = upload(client, room.slug, png_bytes(), "p.png").json()
    client.post(f"/api/rooms/{room.slug}/messages/", {"body": "p", "attachments": [info["id"]]}, format="json")
    attachment = Attachment.objects.get()
    names = [attachment.file.name, attachment.thumbnail.name]
    storage = attachments_storage()
    assert all(storage.exists(n) for n in names)
    attachments_delete_for_message(message=attachment.message)
    assert not any(storage.exists(n) for n in names)
    assert not Attachment.objects.exists()


def test_deleting_the_message_in_the_chat_removes_its_files(storage_kind, auth_client, alice, room):
    """Issue 20: a chat delete (REST here; STOMP and the admin take the same writer path) leaves no files."""
    client = auth_client(alice)
    info = upload(client, room.slug, png_bytes(), "p.png").json()
    message = client.post(
        f"/api/rooms/{room.slug}/messages/", {"body": "p", "attachments": [info["id"]]}, format="json"
    )
    attachment = Attachment.objects.get()
    names = [attachment.file.name, attachment.thumbnail.name]
    storage = attachments_storage()
    assert all(storage.exists(n) for n in names)
    response = client.delete(f"/api/rooms/{room.slug}/messages/{message.json()['id']}/")
    assert response.status_code == 200 and response.json()["attachments"] == []
    assert not any(storage.exists(n) for n in names)
    assert not Attachment.objects.exists() and Message.objects.get().deleted


def test_room_deletion_removes_files(storage_kind, auth_client, alice, room):
    info = upload(auth_client(alice), room.slug, b"bye\n", "b.txt").json()
    name = Attachment.objects.get(pk=info["id"]).file.name
    room.delete()
    assert not attachments_storage().exists(name)


def test_unattached_uploads_expire_after_a_day(storage_kind, auth_client, alice, room):
    client = auth_client(alice)
    old = upload(client, room.slug, b"old\n", "old.txt").json()["id"]
    kept = upload(client, room.slug, b"kept\n", "kept.txt").json()["id"]
    fresh = upload(client, room.slug, b"new\n", "new.txt").json()["id"]
    client.post(f"/api/rooms/{room.slug}/messages/", {"body": "k", "attachments": [kept]}, format="json")
    Attachment.objects.filter(pk__in=[old, kept]).update(created=timezone.now() - timedelta(days=1, minutes=1))
    old_name = Attachment.objects.get(pk=old).file.name
    assert attachments_expire() == 1
    assert set(Attachment.objects.values_list("pk", flat=True)) == {kept, fresh}
    assert not attachments_storage().exists(old_name)


def test_plain_messages_are_unchanged(storage_kind, auth_client, alice, room):
    sent = auth_client(alice).post(f"/api/rooms/{room.slug}/messages/", {"body": "hi"}, format="json")
    assert sent.status_code == 201 and sent.json()["attachments"] == []
    empty = auth_client(alice).post(f"/api/rooms/{room.slug}/messages/", {"body": " "}, format="json")
    assert empty.status_code == 400


def test_decompression_bomb_is_refused(storage_kind, settings, auth_client, alice, room):
    settings.ATTACHMENTS_MAX_IMAGE_PIXELS = 1_000_000
    bomb = png_bytes((3000, 3000))  # a few kB of PNG that decodes to 9 million pixels
    assert len(bomb) < 200_000
    response = upload(auth_client(alice), room.slug, bomb, "bomb.png")
    assert response.status_code == 400 and "pixels" in response.json()["detail"]
    assert not Attachment.objects.exists()


def test_expire_command_deletes_old_unattached_uploads(storage_kind, auth_client, alice, room):
    from io import StringIO

    from django.core.management import call_command

    info = upload(auth_client(alice), room.slug, b"old\n", "old.txt").json()
    Attachment.objects.filter(pk=info["id"]).update(created=timezone.now() - timedelta(days=2))
    out = StringIO()
    call_command("attachments_expire", stdout=out)
    assert "1 expired upload(s) deleted" in out.getvalue()
    assert not Attachment.objects.exists()


def test_admin_lists_attachments_with_their_size_per_message_and_room(storage_kind, admin_client, auth_client, alice):
    room = services.room_create(creator=alice, name="Admin files", is_private=True)
    client = auth_client(alice)
    info = upload(client, room.slug, b"0123456789" * 150, "report.txt").json()
    sent = client.post(f"/api/rooms/{room.slug}/messages/", {"body": "r", "attachments": [info["id"]]}, format="json")
    listing = admin_client.get(f"/admin/attachments/attachment/?room__id__exact={room.pk}").content.decode()
    assert "report.txt" in listing and "1500 bytes" in listing
    message_page = admin_client.get(f"/admin/chat/message/{sent.json()['id']}/change/").content.decode()
    assert "report.txt" in message_page and "1.5\xa0KB" in message_page
    rooms_page = admin_client.get("/admin/chat/room/").content.decode()
    assert f"?room__id__exact={room.pk}" in rooms_page and "1 (1.5\xa0KB)" in rooms_page


def test_admin_change_page_links_no_file_path(storage_kind, admin_client, auth_client, alice, room):
    info = upload(auth_client(alice), room.slug, b"private\n", "p.txt").json()
    page = admin_client.get(f"/admin/attachments/attachment/{info['id']}/change/").content.decode()
    stored = Attachment.objects.get().file.name
    assert stored in page and f'href="/-/not-public/{stored}"' not in page and "/not-public/" not in page
