"""The entry point of the chat writer's own process (``CHAT_WRITER_PROCESS=1``, chat/writer/process.py).

A module of its own, importing nothing of Django at import time: the process is started with ``spawn``, which
imports the target's module before anything else runs, and the chat apps' modules need ``django.setup()``
first. The settings come from the environment the server was started with (DJANGO_SETTINGS_MODULE and the rest).
"""

from __future__ import annotations

import socket


def main(sock: socket.socket) -> None:
    import django

    django.setup()
    from chat.writer.process import serve

    serve(sock)
