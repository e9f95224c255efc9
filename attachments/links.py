"""Short-lived signed URLs for attachment files: S3 presigned URLs, or the signed view of the file system.

Every link names one stored file and says how it may be shown; it works for ``ATTACHMENTS_URL_TTL``
seconds. Only raster images are shown inline; everything else (SVG and HTML above all) is a download.
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils.http import content_disposition_header

from attachments.content import INLINE_IMAGE_TYPES
from attachments.models import Attachment, attachments_storage

_SALT = "attachments.file"


def served_type(content_type: str) -> str:
    """The Content-Type a file is served with: markup a browser would run is plain bytes."""
    return (
        content_type
        if content_type in INLINE_IMAGE_TYPES or content_type == "application/pdf"
        else ("text/plain; charset=utf-8" if content_type == "text/plain" else "application/octet-stream")
    )


def disposition(content_type: str, name: str) -> str:
    return content_disposition_header(content_type not in INLINE_IMAGE_TYPES, name) or "attachment"


def file_url(*, storage_name: str, content_type: str, name: str) -> str:
    """A URL that serves ``storage_name`` for ``ATTACHMENTS_URL_TTL`` seconds, then is refused."""
    ttl = settings.ATTACHMENTS_URL_TTL
    if settings.ATTACHMENTS_STORAGE == "s3":
        params = {
            "ResponseContentType": served_type(content_type),
            "ResponseContentDisposition": disposition(content_type, name),
        }
        return attachments_storage().url(storage_name, parameters=params, expire=ttl)
    token = signing.TimestampSigner(salt=_SALT).sign_object({"n": storage_name, "t": content_type, "d": name})
    return settings.API_ORIGIN + reverse("attachment-file", kwargs={"token": token})


def file_token_read(token: str) -> dict[str, str]:
    """What a file-system link names; raises ``signing.SignatureExpired`` / ``BadSignature``."""
    return signing.TimestampSigner(salt=_SALT).unsign_object(token, max_age=settings.ATTACHMENTS_URL_TTL)


def attachment_json(attachment: Attachment) -> dict:
    """An attachment as the message JSON carries it, with fresh signed URLs."""
    thumbnail_url = None
    thumbnail_name = attachment.thumbnail.name or ""
    if thumbnail_name:
        thumbnail_url = file_url(
            storage_name=thumbnail_name,
            content_type="image/png" if thumbnail_name.endswith(".png") else "image/jpeg",
            name=f"thumbnail-{attachment.name}",
        )
    return {
        "id": attachment.pk,
        "name": attachment.name,
        "size": attachment.size,
        "type": attachment.content_type,
        "width": attachment.width,
        "height": attachment.height,
        "url": file_url(
            storage_name=attachment.file.name or "", content_type=attachment.content_type, name=attachment.name
        ),
        "thumbnail_url": thumbnail_url,
        # Ask here (signed in, a reader of the room) for fresh URLs once these expired.
        "href": settings.API_ORIGIN + reverse("attachment-detail", kwargs={"pk": attachment.pk}),
    }
