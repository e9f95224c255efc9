from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from chat import enforcement
        from stompengine.signals import connection_opened, connections_closed

        enforcement.register()
        connection_opened.connect(_start_ops_listener, dispatch_uid="chat.ops")
        connections_closed.connect(_flush_presence, dispatch_uid="chat.presence")


def _start_ops_listener(sender, **kwargs) -> None:
    """The first STOMP connection of a process starts its operations listener (idempotent)."""
    from chat import ops

    ops.ensure_listener()


async def _flush_presence(sender, **kwargs) -> None:
    """Graceful shutdown: leaves waiting out the debounce window are counted now."""
    from chat.presence import presence_flush

    await presence_flush()
