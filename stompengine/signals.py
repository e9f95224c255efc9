"""The engine's signals: how a project hears about connections and shutdown without the engine importing it.

Connect receivers in an AppConfig's ``ready()``::

    from stompengine.signals import connection_opened, shutting_down

    connection_opened.connect(start_my_listener)   # receiver(sender, connection, **kwargs)
    shutting_down.connect(mark_not_ready)          # receiver(sender, **kwargs)

``connections_closed`` is sent with ``Signal.asend``: its receivers may be ``async def`` and are awaited
(bounded by ``STOMP_SHUTDOWN_GRACE``) before the process stops, e.g. to flush deferred presence leaves.
"""

from __future__ import annotations

from django.dispatch import Signal

#: An authenticated connection joined this process (``connection``: the StompConnection).
connection_opened = Signal()
#: The process got SIGTERM and is about to close its connections (sent before any is closed).
shutting_down = Signal()
#: Every connection of the process has been shut down; async receivers finish their deferred work now.
connections_closed = Signal()
#: The graceful shutdown is over; the process exits next.
shut_down = Signal()
