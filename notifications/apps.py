"""App config: registers the chat listener that turns memberships into notifications."""

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from chat import services as chat_services
        from notifications import services

        # Called after the membership committed; the list is a plain list, so guard against a second
        # ready() (test runners may call it again) registering twice. Notifications caused by messages are
        # written by the chat writer in the messages' own transaction (notifications_for_messages).
        if services.on_member_added not in chat_services.member_added_listeners:
            chat_services.member_added_listeners.append(services.on_member_added)
