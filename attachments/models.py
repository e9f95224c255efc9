"""Attachment rows: one uploaded file (and its thumbnail) in a room, carried by at most one message."""

from __future__ import annotations

from django.conf import settings
from django.core.files.storage import storages
from django.db import models
from django.db.models import Q


def attachments_storage():
    """The storage every attachment lives in (``STORAGES["attachments"]``: file system or S3)."""
    return storages["attachments"]


class Attachment(models.Model):
    """An upload; ``message`` is set once, by the batch that stores the message carrying it."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments")
    room = models.ForeignKey("chat.Room", on_delete=models.CASCADE, related_name="attachments")
    message = models.ForeignKey(
        "chat.Message", null=True, blank=True, on_delete=models.CASCADE, related_name="attachments"
    )
    file = models.FileField(storage=attachments_storage, max_length=300)
    thumbnail = models.FileField(storage=attachments_storage, max_length=300, blank=True, default="")
    name = models.CharField(max_length=255, help_text="The name the uploader gave the file (shown, never a path).")
    size = models.BigIntegerField(help_text="Bytes stored (after EXIF was stripped from an image).")
    content_type = models.CharField(max_length=100, help_text="The type its content shows (magic bytes).")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # The expiry sweep: unattached uploads by age.
            models.Index(fields=["created"], condition=Q(message__isnull=True), name="attachment_unattached_age"),
            models.Index(fields=["owner", "size"], name="attachment_owner_size"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.size} bytes) in {self.room_id}"

    @property
    def is_image(self) -> bool:
        return bool(self.thumbnail)
