"""Access changes take effect on live connections at once: a deactivated user's sockets close, a removed
member's room subscriptions end, on every worker (through chat/ops.py)."""

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


def _member_removed(room: Room, user: AbstractBaseUser) -> None:
    ops.order_leave_room(user.pk, room.slug)


def register() -> None:
    from chat import services

    post_save.connect(_user_saved, sender=get_user_model(), dispatch_uid="chat-enforce-deactivation")
    if _member_removed not in services.member_removed_listeners:
        services.member_removed_listeners.append(_member_removed)
