"""Access changes take effect on live connections at once: a deactivated user's sockets and notification
streams close, a logout ends the user's notification streams, a removed member's room subscriptions end,
on every worker (through chat/ops.py)."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models.signals import post_save

from chat import ops
from chat.models import Room

logger = logging.getLogger(__name__)


def _user_saved(sender, instance: AbstractBaseUser, created: bool, **kwargs) -> None:
    if not created and not instance.is_active:
        user_id = instance.pk
        transaction.on_commit(lambda: ops.order_disconnect_user(user_id), robust=True)


def _logged_out(sender, user_id: int | None = None, user: AbstractBaseUser | None = None, **kwargs) -> None:
    """A refresh token was blacklisted (API logout) or a session ended: the user's SSE streams end."""
    user_id = user_id if user_id is not None else getattr(user, "pk", None)
    if user_id is not None:
        user_id = int(user_id)  # simplejwt keeps the claim as a string
        transaction.on_commit(lambda: ops.order_close_streams(user_id), robust=True)


def _member_removed(room: Room, user: AbstractBaseUser) -> None:
    ops.order_leave_room(user.pk, room.slug)


def register() -> None:
    from django.contrib.auth.signals import user_logged_out

    from accounts.signals import refresh_token_revoked
    from chat import services

    post_save.connect(_user_saved, sender=get_user_model(), dispatch_uid="chat-enforce-deactivation")
    refresh_token_revoked.connect(_logged_out, dispatch_uid="chat-enforce-logout-token")
    user_logged_out.connect(_logged_out, dispatch_uid="chat-enforce-logout-session")
    if _member_removed not in services.member_removed_listeners:
        services.member_removed_listeners.append(_member_removed)
