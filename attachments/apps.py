"""Attachments app: files uploaded into rooms and carried by messages (issue 21)."""

from django.apps import AppConfig


class AttachmentsConfig(AppConfig):
    name = "attachments"
    verbose_name = "Attachments"

    def ready(self) -> None:
        from attachments import signals

        signals.register()
