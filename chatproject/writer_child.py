"""The entry point of the chat writer's own process (``CHAT_WRITER_PROCESS=1``, chat/writer/process.py).

A module of its own, importing nothing of Django at import time: the process is started with ``spawn``, which
imports the target's module before anything else runs, and the chat apps' modules need ``django.setup()``
first. The settings come from the environment the server was started with (DJANGO_SETTINGS_MODULE and the rest).
"""

from __future__ import annotations

import os
import signal
import socket


def main(sock: socket.socket) -> None:
    # The server decides when this process ends, by closing the socket once it has drained: a SIGTERM or a
    # Ctrl-C sent to the whole group (systemd's stop, a terminal) must not end a batch the server still waits for.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One batch at a time: one database connection is all this process uses (PostgreSQL's pool keeps one).
    os.environ["DB_POOL_MIN_SIZE"] = "1"
    import django

    django.setup()
    from chat.writer.process import serve

    serve(sock)
