"""One-time codes: short-lived, single-use secrets that stand in for a JWT where a URL or a page is involved.

Purposes: the hand-over after a form (or social) login, exchanged by global.js for a JWT pair, and the
SSE stream ticket that EventSource passes as ``?ticket=`` (EventSource cannot send headers). Only a
hash of the code is stored; redeeming is an atomic update, so a code works once across all processes.
"""

from django.conf import settings
from django.db import models


class OneTimeCode(models.Model):
    class Purpose(models.TextChoices):
        HANDOVER = "handover", "Login hand-over"
        SSE_TICKET = "sse_ticket", "SSE stream ticket"

    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    code_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="one_time_codes")
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(db_index=True)
    used = models.DateTimeField(null=True, blank=True)
    # When the access token that bought the code expires (SSE tickets): the stream it opens ends then.
    access_expires = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.purpose} for {self.user}"


class UsernameSkeleton(models.Model):
    """The UTS #39 skeleton of a user's name (accounts/usernames.py); unique, so look-alikes cannot coexist.

    Null only for legacy users whose name already looked like an older user's when this table was filled.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="username_skeleton"
    )
    skeleton = models.CharField(max_length=600, unique=True, null=True)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.skeleton}"
