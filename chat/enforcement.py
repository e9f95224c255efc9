"""Access changes take effect on live connections at once: a deactivated user's sockets and notification
streams close, a logout ends the user's notification streams, a removed member's room subscriptions end, an
archived or deleted room's subscriptions all end, on every worker (through chat/ops.py).

Membership and room changes are caught as model signals, not service calls, so that the admin (an inline
membership deleted, the ``archived`` field set, a room deleted) and the shell are enforced like the API."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save

from chat import ops
from chat.models import Membership, Room

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


def _membership_deleted(sender, instance: Membership, **kwargs) -> None:
    room_id, user_id = instance.room_id, instance.user_id

    def order() -> None:
        # Looked up after the commit: when the room itself was deleted (its memberships go first), the
        # room's own order tells everyone, once.
        slug = Room.objects.filter(pk=room_id).values_list("slug", flat=True).first()
        if slug is not None:
            ops.order_leave_room(user_id, slug)

    transaction.on_commit(order, robust=True)


def _room_saving(sender, instance: Room, raw: bool = False, **kwargs) -> None:
    """A room becoming archived (the last member left, or an administrator set the field): close it live."""
    if raw or instance.pk is None or instance.archived is None:
        return
    was = Room.objects.filter(pk=instance.pk).values_list("archived", flat=True).first()
    if was is None:
        slug = instance.slug
        transaction.on_commit(lambda: ops.order_close_room(slug, "was archived"), robust=True)


def _room_deleted(sender, instance: Room, **kwargs) -> None:
    slug = instance.slug
    transaction.on_commit(lambda: ops.order_close_room(slug, "was deleted"), robust=True)


def register() -> None:
    from django.contrib.auth.signals import user_logged_out

    from accounts.signals import refresh_token_revoked

    post_save.connect(_user_saved, sender=get_user_model(), dispatch_uid="chat-enforce-deactivation")
    refresh_token_revoked.connect(_logged_out, dispatch_uid="chat-enforce-logout-token")
    user_logged_out.connect(_logged_out, dispatch_uid="chat-enforce-logout-session")
    post_delete.connect(_membership_deleted, sender=Membership, dispatch_uid="chat-enforce-membership-deleted")
    pre_save.connect(_room_saving, sender=Room, dispatch_uid="chat-enforce-room-archived")
    post_delete.connect(_room_deleted, sender=Room, dispatch_uid="chat-enforce-room-deleted")
