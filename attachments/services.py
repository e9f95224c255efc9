"""Attachment writes: upload into a room, check and attach to a message, delete, expire.

Uploads are validated from their content (magic bytes), images are re-encoded without metadata and get a
thumbnail, and files go to the attachments storage from the upload's temporary file (never whole in
memory). A message carries uploads by id: ``attachments_check`` validates them with the message
(``chat.services.message_prepare``), and ``attachments_attach`` binds them inside the writer's batch
transaction, once (a conditional UPDATE: a second message, or a concurrent batch, finds them taken).
"""

from __future__ import annotations

import logging
import mimetypes
import secrets
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile, File
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from attachments.content import INLINE_IMAGE_TYPES, ImageRefused, image_clean, name_contradicts, read_head, sniff_type
from attachments.models import Attachment, attachments_storage
from chat.exceptions import ChatError, InvalidInput, NotAllowed, NotFound
from chat.selectors import membership_get

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from chat.models import Message, Room

logger = logging.getLogger(__name__)
UserModel = get_user_model()


class TooLarge(ChatError):
    status = 413
    code = "too-large"


class QuotaExceeded(ChatError):
    status = 413
    code = "quota-exceeded"


class UnsupportedType(ChatError):
    status = 415
    code = "unsupported-type"


class AlreadyAttached(ChatError):
    status = 409
    code = "already-attached"


class AttachConflict(IntegrityError):
    """Raised inside the writer's batch when an upload was taken meanwhile: only its unit is refused."""

    def __init__(self, error: ChatError) -> None:
        super().__init__(str(error))
        self.error = error


def too_large_error() -> TooLarge:
    return TooLarge(f"a file may be at most {settings.ATTACHMENTS_MAX_FILE_BYTES} bytes")


def user_storage_used(*, user: User) -> int:
    return Attachment.objects.filter(owner=user).aggregate(total=Sum("size"))["total"] or 0


def _quota_check(*, owner: User, size: int) -> None:
    used = user_storage_used(user=owner)
    if used + size > settings.ATTACHMENTS_USER_QUOTA_BYTES:
        raise QuotaExceeded(
            f"your storage quota of {settings.ATTACHMENTS_USER_QUOTA_BYTES} bytes would be exceeded "
            f"({used} bytes used); delete some files first"
        )


def upload_create(*, room: Room, owner: User, file: File, name: str) -> Attachment:
    """Store one uploaded file in ``room`` for ``owner`` (a member); not yet attached to any message."""
    if membership_get(room=room, user=owner) is None:
        raise NotAllowed("only members of a room can upload into it; join it first")
    size = file.size or 0
    if size > settings.ATTACHMENTS_MAX_FILE_BYTES:
        raise too_large_error()
    if size == 0:
        raise InvalidInput("the file is empty")
    name = (name or "file").replace("\\", "/").rsplit("/", 1)[-1].strip()[:255] or "file"
    content_type = sniff_type(read_head(file))
    if content_type not in settings.ATTACHMENTS_ALLOWED_TYPES:
        allowed = ", ".join(settings.ATTACHMENTS_ALLOWED_TYPES)
        raise UnsupportedType(
            f"files of type {content_type} (by their content) are not accepted here; allowed: {allowed}"
        )
    claimed = name_contradicts(name, content_type)
    if claimed is not None:
        raise UnsupportedType(f"the name {name!r} says {claimed} but the content is {content_type}")

    width = height = None
    thumbnail: ContentFile | None = None
    thumbnail_ext = ""
    content: File = file
    if content_type in INLINE_IMAGE_TYPES:
        try:
            clean = image_clean(
                file,
                content_type=content_type,
                max_pixels=settings.ATTACHMENTS_MAX_IMAGE_PIXELS,
                thumbnail_px=settings.ATTACHMENTS_THUMBNAIL_PX,
            )
        except ImageRefused as exc:
            raise InvalidInput(f"this image is refused: {exc}") from None
        content, size, width, height = ContentFile(clean.data), len(clean.data), clean.width, clean.height
        thumbnail = ContentFile(clean.thumbnail)
        thumbnail.content_type = clean.thumbnail_type  # type: ignore[attr-defined]
        thumbnail_ext = ".png" if clean.thumbnail_type == "image/png" else ".jpg"
    _quota_check(owner=owner, size=size)  # before storing anything: the common refusal costs no upload

    storage = attachments_storage()
    # The key says nothing about the file: a random part, the type's extension; the shown name is a column.
    base = f"rooms/{room.pk}/{secrets.token_urlsafe(18)}"
    content.content_type = content_type  # type: ignore[attr-defined]  # S3 stores it as the object's type
    stored = storage.save(base + (mimetypes.guess_extension(content_type) or ".bin"), content)
    thumb_stored = ""
    try:
        if thumbnail is not None:
            thumb_stored = storage.save(f"{base}-thumb{thumbnail_ext}", thumbnail)
        with transaction.atomic():
            # Uploads of one user in flight together all passed the check above; the owner's row lock
            # serialises the final check with the insert, so together they never pass the quota.
            list(UserModel.objects.select_for_update().filter(pk=owner.pk).values_list("pk", flat=True))
            _quota_check(owner=owner, size=size)
            attachment = Attachment.objects.create(
                owner=owner,
                room=room,
                file=stored,
                thumbnail=thumb_stored,
                name=name,
                size=size,
                content_type=content_type,
                width=width,
                height=height,
            )
    except BaseException:
        _files_delete([stored, thumb_stored])
        raise
    logger.info("upload %s stored: %s bytes of %s in room %s", attachment.pk, size, content_type, room.pk)
    return attachment


def attachment_ids_parse(raw: Any) -> tuple[int, ...]:
    """The ``attachments`` field of a message: a list of upload ids (absent or null: none)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in raw):
        raise InvalidInput("attachments is a list of upload ids (whole numbers)")
    ids = tuple(dict.fromkeys(raw))
    if len(ids) != len(raw):
        raise InvalidInput("an upload may be attached once: the same id appears twice")
    if len(ids) > settings.ATTACHMENTS_MAX_PER_MESSAGE:
        raise InvalidInput(f"a message carries at most {settings.ATTACHMENTS_MAX_PER_MESSAGE} attachments")
    return ids


def attachments_check(*, room: Room, author: User, ids: Sequence[int]) -> tuple[int, ...]:
    """Validate a message's uploads before the message joins a batch: the author's, this room's, unused."""
    if not ids:
        return ()
    found = {
        a.pk: a for a in Attachment.objects.filter(pk__in=ids).only("id", "owner_id", "room_id", "message_id", "size")
    }
    total = 0
    for pk in ids:
        attachment = found.get(pk)
        if attachment is None or attachment.owner_id != author.pk:
            raise NotFound(f"there is no upload {pk} of yours")
        if attachment.room_id != room.pk:
            raise InvalidInput(f"upload {pk} was uploaded to another room; upload it in this one")
        if attachment.message_id is not None:
            raise AlreadyAttached(f"upload {pk} is already attached to a message")
        total += attachment.size
    if total > settings.ATTACHMENTS_MAX_MESSAGE_BYTES:
        raise TooLarge(f"the files of one message may be at most {settings.ATTACHMENTS_MAX_MESSAGE_BYTES} bytes")
    return tuple(ids)


def attachments_attach(*, message: Message, ids: Sequence[int]) -> None:
    """Bind the uploads to ``message`` inside the batch transaction; ``AttachConflict`` if one was taken.

    One conditional UPDATE: of two messages (or two batches, in two processes) attaching one upload, the
    second finds it taken and its unit is refused, the first keeps it.
    """
    if not ids:
        return
    Attachment.objects.filter(
        pk__in=ids, owner_id=message.author_id, room_id=message.room_id, message__isnull=True
    ).update(message=message)
    # Counted by a query, not taken from the UPDATE's row count: in the writer's batch on PostgreSQL (psycopg's
    # pipeline mode) a statement's row count is unknown until its results are read, and the UPDATE's are read
    # only at the next sync (it said -1, and every message with files was refused). A query syncs.
    bound = Attachment.objects.filter(pk__in=ids, message=message).count()
    if bound != len(ids):
        raise AttachConflict(AlreadyAttached("an upload of this message was attached to another message meanwhile"))


def attachments_by_message(message_ids: Iterable[int]) -> dict[int, list[Attachment]]:
    by_message: dict[int, list[Attachment]] = {}
    ids = list(message_ids)
    if ids:
        for attachment in Attachment.objects.filter(message_id__in=ids).order_by("id"):
            by_message.setdefault(attachment.message_id, []).append(attachment)  # type: ignore[arg-type]
    return by_message


def attachments_delete_for_message(*, message: Message) -> int:
    """Delete a message's attachments and, once the transaction commits, their files.

    Messages have no delete of their own yet (issue 20): that service calls this. Deletes that cascade
    (a room or a user deleted in the admin) remove the files too, through the same post-delete hook
    (attachments/signals.py).
    """
    deleted, _ = Attachment.objects.filter(message=message).delete()
    return deleted


def attachments_expire(*, now=None) -> int:
    """Delete uploads never attached within ``ATTACHMENTS_UNATTACHED_TTL`` seconds, and their files."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.ATTACHMENTS_UNATTACHED_TTL)
    deleted = 0
    # In slices, so that a large backlog neither holds one long transaction nor loads every row at once.
    while True:
        ids = list(
            Attachment.objects.filter(message__isnull=True, created__lt=cutoff).values_list("id", flat=True)[:500]
        )
        if not ids:
            return deleted
        with transaction.atomic():
            count, _ = Attachment.objects.filter(pk__in=ids, message__isnull=True).delete()
        deleted += count


def _files_delete(names: Iterable[str]) -> None:
    storage = attachments_storage()
    for name in names:
        if not name:
            continue
        try:
            storage.delete(name)
        except Exception:  # a file left behind is logged, never a reason to fail the delete
            logger.exception("could not delete attachment file %s", name)


def files_delete_on_commit(names: Sequence[str]) -> None:
    transaction.on_commit(lambda: _files_delete(names), robust=True)
