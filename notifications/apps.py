"""App config: registers the chat listeners that turn messages and memberships into notifications."""

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from chat import services as chat_services
        from notifications import services

        # Called after the chat write committed; the lists are plain lists, so guard against a second
        # ready() (test runners may call it again) registering twice.
        if services.on_message_created not in chat_services.message_created_listeners:
            chat_services.message_created_listeners.append(services.on_message_created)
        if services.on_member_added not in chat_services.member_added_listeners:
            chat_services.member_added_listeners.append(services.on_member_added)
