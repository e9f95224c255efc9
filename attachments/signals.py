"""Files follow their rows: when an Attachment row is deleted (directly or by a cascade), its files go too.

A hook rather than a service call because rows also go by cascades no service sees: a room or a user
deleted in the admin, a message deleted by a later feature. The files are removed after the commit, so a
rolled-back delete keeps them.
"""

from __future__ import annotations

from django.db.models.signals import post_delete


def _attachment_deleted(sender, instance, **kwargs) -> None:
    from attachments.services import files_delete_on_commit

    files_delete_on_commit([instance.file.name, instance.thumbnail.name])


def register() -> None:
    from attachments.models import Attachment

    post_delete.connect(_attachment_deleted, sender=Attachment, dispatch_uid="attachments-files")
