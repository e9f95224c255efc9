"""Stored notifications: the stream replays these by id, so nothing sent is ever only in memory."""

from django.conf import settings
from django.db import models


class Notification(models.Model):
    class Kind(models.TextChoices):
        MENTION = "mention", "Mention"
        DIRECT_MESSAGE = "direct_message", "Direct message"
        ROOM_INVITE = "room_invite", "Added to a room"
        ANNOUNCEMENT = "announcement", "Announcement"

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    payload = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    read = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]
        # Replay after Last-Event-ID and the unread count both walk one recipient's rows by id.
        indexes = [models.Index(fields=["recipient", "id"], name="notification_recipient_id")]

    def __str__(self) -> str:
        return f"{self.kind} for {self.recipient}"
