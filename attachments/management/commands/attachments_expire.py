"""``manage.py attachments_expire``: delete uploads never attached to a message (and their files).

Run it periodically (deploy/systemd/chat-attachments-expire.timer runs it hourly; cron works too).
"""

from django.core.management.base import BaseCommand

from attachments.services import attachments_expire


class Command(BaseCommand):
    help = "Delete uploads older than ATTACHMENTS_UNATTACHED_TTL that no message carries, with their files."

    def handle(self, *args, **options) -> None:
        deleted = attachments_expire()
        self.stdout.write(f"{deleted} expired upload(s) deleted")
