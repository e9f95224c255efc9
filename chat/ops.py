"""Live operations across every worker, through the channel layer: reports for the admin, and enforcement.

Each worker process runs one listener (started with its first STOMP connection) in the channel-layer
group ``chat.ops``, attached to the runtime of its event loop (``stompengine.runtime``); the layer is the
bus layer, so these orders travel on the same Redis connections as chat. The admin's operations page
asks the group for reports and collects the answers for a moment; deactivating a user or removing a
member publishes an order that every worker carries out on its own connections at once; so does archiving or
deleting a room, whoever does it (the admin included). SSE streams
start the listener too: deactivation and logout end a user's notification streams on every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from channels.layers import get_channel_layer

from chat.destinations import room_topic

logger = logging.getLogger(__name__)

OPS_GROUP = "chat.ops"
WORKER = f"{socket.gethostname()}:{os.getpid()}"


class Listener:
    """The operations listener of one runtime: a task in the ``chat.ops`` group, restarted if it ended."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None

    def ensure(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(_listen(), name="chat-ops-listener")

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


def ensure_listener() -> None:
    """Start the listener of the running loop's runtime (idempotent)."""
    from stompengine import runtime

    runtime.current().attach("chat.ops", lambda _rt: Listener()).ensure()


async def _listen() -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    channel = await layer.new_channel("chat.ops.")
    await layer.group_add(OPS_GROUP, channel)
    backoff = 0.0
    try:
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: back off (logged once per outage), then rejoin the group
                if not backoff:
                    logger.warning("operations listener: channel layer receive failed (%s); retrying", exc)
                backoff = min(max(backoff * 2, 0.5), 30.0)
                await asyncio.sleep(backoff)
                with contextlib.suppress(Exception):
                    await layer.group_add(OPS_GROUP, channel)
                continue
            if backoff:
                logger.info("operations listener: channel layer reachable again")
                backoff = 0.0
            try:
                await _handle(layer, message)
            except Exception:
                logger.exception("operations listener: handling %s failed", message.get("type"))
    finally:
        await layer.group_discard(OPS_GROUP, channel)


def worker_report() -> dict[str, Any]:
    """What this process has: STOMP connections (with transports and queues) and SSE streams."""
    from stompengine.realtime.tracking import tracker

    try:
        from notifications.stream import registry as streams

        sse = streams.snapshot()
    except ImportError:
        sse = {}
    return {
        "worker": WORKER,
        "connections": tracker.snapshot(),
        "slow_consumer_disconnects": tracker.slow_consumer_disconnects,
        "sse": sse,
    }


def disconnect_user_here(user_id: int, reason: str) -> int:
    """Close every STOMP connection of the user in this process with an ERROR; returns how many."""
    from stompengine.realtime.tracking import tracker

    closing = tracker.matching(lambda c: getattr(c.user, "pk", None) == user_id)
    for connection in closing:
        connection.fail("Unauthorized", reason, code="account-disabled")
    return len(closing)


def close_streams_here(user_id: int, code: str, reason: str) -> int:
    """End every notification stream (SSE) of the user in this process; returns how many."""
    from notifications.stream import close_user_streams

    return close_user_streams(user_id, code=code, detail=reason)


def leave_room_here(user_id: int, slug: str) -> int:
    """End the user's subscriptions to the room's topics in this process and tell them why (they were
    removed, or left on another tab: either way the page shows it and stops posting there)."""
    notice = {"code": "removed", "detail": f"you are no longer a member of {slug}", "room": slug}
    return _drop_room_subscriptions(slug, notice, lambda c: getattr(c.user, "pk", None) == user_id)


def close_room_here(slug: str, reason: str) -> int:
    """End everyone's subscriptions to the room's topics in this process (an administrator archived or
    deleted it): nothing more can be sent there, so nobody should sit waiting on it."""
    notice = {"code": "room-closed", "detail": f"the room {slug} {reason}", "room": slug}
    return _drop_room_subscriptions(slug, notice, lambda c: True)


def _drop_room_subscriptions(slug: str, notice: dict[str, str], whose: Callable[[Any], bool]) -> int:
    from stompengine.connection import ERRORS_DESTINATION
    from stompengine.realtime.tracking import tracker

    prefix = room_topic(slug)
    dropped = 0
    for connection in tracker.matching(whose):
        gone = connection.drop_subscriptions(lambda d: d == prefix or d.startswith(prefix + "."))
        if gone:
            dropped += len(gone)
            connection.notify(ERRORS_DESTINATION, notice)
    return dropped


async def _handle(layer: Any, message: dict[str, Any]) -> None:
    kind = message.get("type")
    if kind == "ops.report":
        await layer.send(message["reply"], {"type": "ops.reply", "report": worker_report()})
    elif kind == "ops.disconnect_user":
        reason = message.get("reason", "the account was deactivated")
        count = disconnect_user_here(message["user_id"], reason)
        count += close_streams_here(message["user_id"], "account-disabled", reason)
        if count:
            logger.info("closed %d connection(s) of deactivated user %s", count, message["user_id"])
    elif kind == "ops.close_streams":
        code = message.get("code", "logged-out")
        count = close_streams_here(message["user_id"], code, message.get("reason", ""))
        if count:
            logger.info("closed %d notification stream(s) of user %s (%s)", count, message["user_id"], code)
    elif kind == "ops.leave_room":
        leave_room_here(message["user_id"], message["slug"])
    elif kind == "ops.close_room":
        count = close_room_here(message["slug"], message.get("reason", "was closed"))
        if count:
            logger.info("ended %d subscription(s) to closed room %s", count, message["slug"])


async def collect_reports(*, wait: float = 0.7) -> list[dict[str, Any]]:
    """Ask every worker for its report; returns the answers that arrived within ``wait`` seconds."""
    layer = get_channel_layer()
    if layer is None:
        return [worker_report()]
    # This process answers for itself directly: the view may run on another loop than the listener's,
    # and a listener started here would die with that loop and leave a dead member in the group.
    reports: dict[str, dict[str, Any]] = {WORKER: worker_report()}
    # A channel of this loop's runtime, live before the question goes out, so no answer can come too early
    # (a sync view may run this on another loop than the listener's: each loop's runtime has its own).
    reply = await layer.new_channel("chat.ops.reply.")
    await layer.group_send(OPS_GROUP, {"type": "ops.report", "reply": reply})
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            break
        try:
            async with asyncio.timeout(remaining):
                message = await layer.receive(reply)
        except TimeoutError:
            break
        report = message.get("report", {})
        reports[report.get("worker", "?")] = report
    return sorted(reports.values(), key=lambda r: r["worker"])


async def _broadcast(message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(OPS_GROUP, message)


def order_disconnect_user(user_id: int, reason: str = "the account was deactivated") -> None:
    """From sync code (admin, signals): every worker closes this user's connections."""
    from asgiref.sync import async_to_sync

    async_to_sync(_broadcast)({"type": "ops.disconnect_user", "user_id": user_id, "reason": reason})


def order_leave_room(user_id: int, slug: str) -> None:
    """From sync code: every worker ends this user's subscriptions to the room."""
    from asgiref.sync import async_to_sync

    async_to_sync(_broadcast)({"type": "ops.leave_room", "user_id": user_id, "slug": slug})


def order_close_room(slug: str, reason: str) -> None:
    """From sync code (the admin archiving or deleting a room): every worker ends every subscription to it."""
    from asgiref.sync import async_to_sync

    async_to_sync(_broadcast)({"type": "ops.close_room", "slug": slug, "reason": reason})


def order_close_streams(user_id: int, *, code: str = "logged-out", reason: str = "you logged out") -> None:
    """From sync code (logout): every worker ends this user's notification streams."""
    from asgiref.sync import async_to_sync

    async_to_sync(_broadcast)({"type": "ops.close_streams", "user_id": user_id, "code": code, "reason": reason})
