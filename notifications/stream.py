"""The SSE stream ``GET /api/notifications/stream/``: an async Channels consumer, one small task per client.

No thread and no database connection is held by an open stream: authentication and replay batches go
through ``database_sync_to_async`` and return; live events arrive through the channel layer already
encoded as JSON. Resume without gap or duplicate (Last-Event-ID header or ``?last_event_id=``):

1. join the recipient's group: the bus layer returns once the group's subscription is live, so every
   event committed from now on reaches this consumer (the barrier of ``stompengine.gating``);
2. hold the live events that arrive while replaying (a ``ReplayGate``, as STOMP's ``since-id`` does);
3. replay the stored notifications after the client's id in batches, oldest first;
4. send the held events that the replay did not already contain, then write live events directly
   (a live copy of a notification the replay already sent, still in flight, is recognised and dropped).

Limits and revocation: at most ``SSE_MAX_STREAMS_PER_USER`` open streams per user in each worker process
(beyond it a JSON 429, checked right after authentication, before anything is joined); a stream ends
with an ``event: close`` (JSON ``{"code", "detail"}``) when the access token that bought its ticket (or
the Bearer token, or the session) expires, and at once when its user is deactivated or logs out (the
orders reach every worker through chat/ops.py). The page then reconnects with a fresh ticket and
``last_event_id``, so nothing is lost.

Django middleware does not run for Channels consumers, so CORS and the origin check are done here with
the project's one origin matcher; every error is a JSON body (never ``text/plain``, never a redirect).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from channels.layers import BaseChannelLayer
from django.conf import settings
from django.utils import timezone

from accounts.channels import scope_header
from accounts.tokens import TokenRejected, authenticate_access_token, parse_bearer
from chat import ops
from chatproject.origins import normalize_origin, origin_matcher
from notifications import selectors
from notifications.publishing import EVENT_TYPE, READ_EVENT, READ_EVENT_TYPE, StreamEvent, channel_layer, group_name
from notifications.sse import Event, encode_comment, encode_event, encode_retry
from notifications.tickets import StreamUnauthorized, stream_identity_resolve
from operations import metrics
from stompengine.dispatch import DirectDispatchMixin
from stompengine.gating import ReplayGate, replay_then_live

logger = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]
EVENT_STREAM = b"text/event-stream; charset=utf-8"
APPLICATION_JSON = b"application/json"
MAX_LAST_EVENT_ID = 2**63 - 1
PREFLIGHT_MAX_AGE = b"3600"
ALLOWED_REQUEST_HEADERS = b"accept, authorization, cache-control, last-event-id"
TASK_EXIT_TIMEOUT = 5.0  # seconds a disconnect waits for its cancelled tasks
HEARTBEAT_MAX_TICK = 1.0  # seconds between the heart-beat task's looks at the streams
HEARTBEAT_SLICE = 100  # heart-beat writes between yields to the event loop
# Seconds after going live during which a live copy of a replayed notification is still recognised.
DEDUPLICATION_WINDOW = 60.0
CLOSE_EVENT = "close"  # the event that says why the server ends a stream (never carries an id)


class StreamRegistry:
    """Per-process open streams, by user too: the per-user cap, revocation and the stats endpoint use it."""

    def __init__(self) -> None:
        self.streams: set[NotificationStreamConsumer] = set()
        self.by_user: defaultdict[int, set[NotificationStreamConsumer]] = defaultdict(set)

    def claim(self, stream: NotificationStreamConsumer, user_id: int) -> bool:
        """Count ``stream`` as one of the user's; False (nothing counted) when the user is at the cap."""
        mine = self.by_user[user_id]
        if len(mine) >= settings.SSE_MAX_STREAMS_PER_USER:
            if not mine:
                del self.by_user[user_id]
            return False
        mine.add(stream)
        metrics.SSE_STREAMS.inc()
        return True

    def release(self, stream: NotificationStreamConsumer) -> None:
        self.streams.discard(stream)
        if stream.user_id is not None:
            mine = self.by_user.get(stream.user_id)
            if mine is not None and stream in mine:
                metrics.SSE_STREAMS.dec()
                mine.discard(stream)
                if not mine:
                    del self.by_user[stream.user_id]

    def of_user(self, user_id: int) -> list[NotificationStreamConsumer]:
        return list(self.by_user.get(user_id, ()))

    def snapshot(self) -> dict[str, int]:
        return {
            "open_streams": len(self.streams),
            "stream_tasks": sum(s.running_tasks() for s in self.streams),
            "grouped_streams": sum(1 for s in self.streams if s.group is not None),
            "heartbeat_streams": len(heartbeats.streams),
            "asyncio_tasks": len(asyncio.all_tasks()),
            "users": len(self.by_user),
        }


class Heartbeats:
    """One task per process writes the comment heart-beat to every stream idle for an interval.

    No timer per stream (memory), and no burst of thousands of writes at one instant (latency): each tick
    writes only to the streams that have sent nothing for ``SSE_HEARTBEAT_INTERVAL``, yielding to the
    loop every ``HEARTBEAT_SLICE`` writes so live events are not held up behind the heart-beats.
    """

    def __init__(self) -> None:
        self.streams: set[NotificationStreamConsumer] = set()
        self.task: asyncio.Task[None] | None = None

    def add(self, stream: NotificationStreamConsumer) -> None:
        self.streams.add(stream)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.run())

    def discard(self, stream: NotificationStreamConsumer) -> None:
        self.streams.discard(stream)

    async def run(self) -> None:
        comment = encode_comment()
        interval = settings.SSE_HEARTBEAT_INTERVAL
        tick = min(HEARTBEAT_MAX_TICK, interval / 4)
        loop = asyncio.get_running_loop()
        try:
            while self.streams:
                await asyncio.sleep(tick)
                due = loop.time() - interval
                for written, stream in enumerate([s for s in self.streams if s.last_write <= due], start=1):
                    try:
                        await stream.write(comment)
                    except Exception:
                        logger.exception("heart-beat to a notification stream failed")
                    if written % HEARTBEAT_SLICE == 0:
                        await asyncio.sleep(0)
        finally:
            # No await between the emptiness check and here, so add() never sees a finishing task.
            self.task = None


registry = StreamRegistry()
_closing: set[asyncio.Task[None]] = set()  # close events being written (a reference until they are)
heartbeats = Heartbeats()


def close_user_streams(user_id: int, *, code: str, detail: str) -> int:
    """End every stream of the user in this process (deactivation, logout); returns how many."""
    streams = registry.of_user(user_id)
    for stream in streams:
        stream.revoke(code, detail)
    return len(streams)


def _event_id(event: StreamEvent) -> int:
    return event.id


def sse_frame(event: StreamEvent) -> bytes:
    return encode_event(Event(data=event.data, event=event.kind, id=str(event.id)))


def _is_allowed_origin(origin: str) -> bool:
    return origin_matcher().allows(origin) or normalize_origin(origin) == settings.API_ORIGIN


def cors_headers(scope: dict[str, Any]) -> Headers:
    """CORS with credentials for an allowed Origin (echoed, never ``*``); nothing for other callers."""
    origin = scope_header(scope, b"origin")
    headers: Headers = [(b"vary", b"Origin")]
    if origin and _is_allowed_origin(origin):
        headers += [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-credentials", b"true"),
        ]
    return headers


def parse_last_event_id(value: str | None) -> int | None:
    """The id to resume after, None for none; ValueError for anything that is not one of our ids."""
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit() or int(value) > MAX_LAST_EVENT_ID:
        raise ValueError(value)
    return int(value)


def session_key(scope: dict[str, Any]) -> str | None:
    raw = scope_header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        name, _, value = part.strip().partition("=")
        if name == settings.SESSION_COOKIE_NAME:
            return value.strip().strip('"') or None
    return None


class NotificationStreamConsumer(DirectDispatchMixin, AsyncHttpConsumer):
    """One open EventSource: authenticate, join the user's group, replay, then relay live events.

    Tasks: ``task`` runs the connect phase (auth, join, replay) and ends; ``receiver`` relays the
    channel layer's messages until the client leaves. Heart-beats come from the process's
    ``heartbeats`` task. The layer is joined only after authentication succeeded.
    """

    channel_layer_alias = "notifications.no-layer"  # names no layer: AsyncConsumer must not open one

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.task: asyncio.Task[None] | None = None
        self.receiver: asyncio.Task[None] | None = None
        self.layer: BaseChannelLayer | None = None
        self.layer_channel: str | None = None
        self.group: str | None = None
        # Holds live events while the stored ones are replayed, then drops late copies of replayed ones.
        self.gate: ReplayGate[StreamEvent] | None = None
        self.user_id: int | None = None
        self.expiry_timer: asyncio.TimerHandle | None = None
        self.forget_timer: asyncio.TimerHandle | None = None
        self.started = False
        self.finished = False
        self.last_write = 0.0  # event-loop time of the last bytes sent (heart-beats are due after idling)
        self.pending_read: str | None = None  # a read event that arrived during the replay

    def running_tasks(self) -> int:
        return sum(1 for t in (self.task, self.receiver) if t is not None and not t.done())

    async def http_request(self, message: dict[str, Any]) -> None:
        if message.get("more_body"):
            return  # a GET has no body worth keeping
        method = self.scope.get("method", "GET")
        origin = scope_header(self.scope, b"origin")
        if method == "OPTIONS":
            await self.preflight()
        elif method != "GET":
            await self.respond_json(405, {"detail": f"{method} is not allowed here; use GET"},
                                    headers=[(b"allow", b"GET, OPTIONS")])  # fmt: skip
        elif origin is not None and not _is_allowed_origin(origin):
            logger.warning("refused notification stream for origin %r", origin)
            await self.respond_json(403, {"detail": f"origin {origin!r} may not open this stream", "code": "origin"})
        else:
            registry.streams.add(self)
            self.task = asyncio.get_running_loop().create_task(self.run())

    async def http_disconnect(self, message: dict[str, Any]) -> None:
        """The client went away (or the response ended): free the tasks and the group at once."""
        try:
            heartbeats.discard(self)
            for timer in (self.forget_timer, self.expiry_timer):
                if timer is not None:
                    timer.cancel()
            tasks = [t for t in (self.task, self.receiver) if t is not None and not t.done()]
            for task in tasks:
                task.cancel()
            await self.leave_group()
            if tasks:
                # They end at the next step of the loop; bounded so that no layer can keep us here.
                await asyncio.wait(tasks, timeout=TASK_EXIT_TIMEOUT)
                for task in tasks:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        logger.debug("stream task ended with %r", task.exception())
        finally:
            registry.release(self)
        raise StopConsumer()

    async def receive_events(self) -> None:
        """Relay this stream's channel-layer messages until cancelled."""
        assert self.layer is not None and self.layer_channel is not None
        try:
            while True:
                message = await self.layer.receive(self.layer_channel)
                kind = message.get("type")
                if kind == EVENT_TYPE:
                    await self.notification_event(message)
                elif kind == READ_EVENT_TYPE:
                    await self.notification_read(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The layer is gone (Redis restarted, say): end the response, so the browser reconnects with
            # Last-Event-ID and the replay delivers whatever this stream could not.
            logger.warning("notification stream lost its channel layer; closing it", exc_info=True)
            await self.write(b"", more=False)

    def revoke(self, code: str, detail: str) -> None:
        """End this stream now with an ``event: close`` saying why (token expired, logged out, deactivated)."""
        if self.finished:
            return
        if self.expiry_timer is not None:
            self.expiry_timer.cancel()
            self.expiry_timer = None
        if self.task is not None and not self.task.done():
            self.task.cancel()  # still connecting: nothing more may be replayed or sent
        heartbeats.discard(self)
        task = asyncio.get_running_loop().create_task(self._send_close(code, detail))
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    async def _send_close(self, code: str, detail: str) -> None:
        try:
            if not self.started:
                await self.respond_json(401, {"detail": detail, "code": code})
                return
            data = json.dumps({"code": code, "detail": detail})
            await self.write(encode_event(Event(data=data, event=CLOSE_EVENT)), more=False)
        except Exception:
            logger.debug("could not end a revoked notification stream", exc_info=True)

    def schedule_expiry(self, expires_at: Any) -> None:
        """Close the stream when the credential that opened it runs out (None: it does not)."""
        if expires_at is None:
            return
        remaining = max((expires_at - timezone.now()).total_seconds(), 0.0)
        self.expiry_timer = asyncio.get_running_loop().call_later(
            remaining, self.revoke, "token-expired",
            "the access token that opened this stream has expired: reconnect with a new ticket and last_event_id",
        )  # fmt: skip

    async def notification_event(self, message: dict[str, Any]) -> None:
        """A live notification for this stream's user."""
        event = StreamEvent(recipient_id=0, id=int(message["id"]), kind=message["kind"], data=message["data"])
        if self.gate is not None and self.gate.admit(event):
            await self.write(sse_frame(event))
            metrics.SSE_EVENTS.inc()

    async def notification_read(self, message: dict[str, Any]) -> None:
        """Some of this user's notifications were read: ``event: read`` with no id (Last-Event-ID stays).

        While the replay runs, only the newest is kept and sent once live (it carries the latest count).
        """
        if self.gate is None or not self.gate.live:
            self.pending_read = message["data"]
            return
        self.pending_read = None  # one still waiting to be written after the replay is older than this
        await self.write(encode_event(Event(data=message["data"], event=READ_EVENT)))

    # --- The connect phase ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self.stream()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("notification stream failed")
            if not self.started:
                await self.respond_json(500, {"detail": "internal server error"})
            elif not self.finished:
                with contextlib.suppress(Exception):
                    await self.write(b"", more=False)

    async def stream(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        ticket = query.get("ticket", [None])[-1]
        raw_last_id = scope_header(self.scope, b"last-event-id") or query.get("last_event_id", [None])[-1]
        try:
            last_id = parse_last_event_id(raw_last_id)
        except ValueError:
            await self.respond_json(400, {"detail": "Last-Event-ID must be the id of a notification", "code": "bad-id"})
            return
        bearer = parse_bearer(scope_header(self.scope, b"authorization"))
        try:
            identity = await database_sync_to_async(stream_identity_resolve)(
                ticket=ticket, bearer=bearer, session_key=session_key(self.scope)
            )
        except StreamUnauthorized as exc:
            await self.respond_json(401, {"detail": exc.detail, "code": exc.code},
                                    headers=[(b"www-authenticate", b'Bearer realm="notifications"')])  # fmt: skip
            return
        user = identity.user
        # No await between the cap check and the claim: two streams cannot both take the last place.
        if not registry.claim(self, user.pk):
            limit = settings.SSE_MAX_STREAMS_PER_USER
            logger.info("refused a notification stream of user %s: %d open in this worker", user.pk, limit)
            await self.respond_json(429, {"detail": f"too many notification streams: at most {limit} per user are open "
                                          "at once; close another tab or stream first", "code": "too-many-streams",
                                          "limit": limit})  # fmt: skip
            return
        self.user_id = user.pk
        ops.ensure_listener()  # deactivation and logout orders reach this worker's streams
        self.schedule_expiry(identity.expires_at)

        # 1. Join first: from here on every committed notification reaches notification_event().
        layer = channel_layer()
        if layer is None:
            raise RuntimeError(f"channel layer {settings.NOTIFICATIONS_CHANNEL_LAYER!r} is not configured")
        self.layer = layer
        self.layer_channel = await layer.new_channel()
        self.gate = ReplayGate(_event_id, limit=settings.SSE_REPLAY_BUFFER_LIMIT)
        self.receiver = asyncio.get_running_loop().create_task(self.receive_events())
        self.group = group_name(user.pk)
        # 2-3. Replay what the client missed, in batches; 4. then what arrived meanwhile, then live.
        await self.replay_and_go_live(user_id=user.pk, after=last_id)
        heartbeats.add(self)

    async def replay_and_go_live(self, *, user_id: int, after: int | None) -> None:
        """Join the group (the barrier), send the headers and the replay, then the held events; then live."""
        gate, layer, group, channel = self.gate, self.layer, self.group, self.layer_channel
        assert gate is not None and layer is not None and group is not None and channel is not None

        async def replay(gate: ReplayGate[StreamEvent]) -> None:
            await self.start()
            await self.write(encode_retry(settings.SSE_RETRY_MS))
            await self.replay(gate, user_id=user_id, after=after)

        held = await replay_then_live(gate, lambda: layer.group_add(group, channel), replay)
        if held:
            await self.write(b"".join(sse_frame(e) for e in held))
            metrics.SSE_EVENTS.inc(len(held))
        if self.pending_read is not None:
            pending, self.pending_read = self.pending_read, None
            await self.write(encode_event(Event(data=pending, event=READ_EVENT)))
        replayed = len(gate.recent or ())
        metrics.sse_replayed(after, replayed + len(held))
        if replayed:
            # A notification read by the replay may still have its live copy in flight (its publisher
            # commits, then publishes): remember the newest replayed ids for a while to drop that copy.
            gate.keep_newest(settings.SSE_REPLAY_BUFFER_LIMIT)
            self.forget_timer = asyncio.get_running_loop().call_later(DEDUPLICATION_WINDOW, self.forget_replayed)

    async def replay(self, gate: ReplayGate[StreamEvent], *, user_id: int, after: int | None) -> None:
        """Write the stored notifications after ``after`` in batches; again from the first dropped on overflow."""
        batch_size = settings.SSE_REPLAY_BATCH
        cursor = after
        while True:
            if cursor is not None:
                while True:
                    events = await database_sync_to_async(selectors.stream_events_after)(
                        user_id=user_id, after=cursor, limit=batch_size
                    )
                    if events:
                        cursor = events[-1].id
                        fresh = set(gate.replayed([e.id for e in events]))
                        if fresh:
                            await self.write(b"".join(sse_frame(e) for e in events if e.id in fresh))
                            metrics.SSE_EVENTS.inc(len(fresh))
                    if len(events) < batch_size:
                        break
            # Too much arrived while replaying: it is all stored, so replay again from where the
            # dropped events start (a client without Last-Event-ID gets them from the first dropped).
            again = gate.take_overflow()
            if again is None:
                return
            cursor = again if cursor is None else min(cursor, again)

    def forget_replayed(self) -> None:
        if self.gate is not None:
            self.gate.forget_replayed()
        self.forget_timer = None

    async def leave_group(self) -> None:
        if self.group is not None and self.layer is not None and self.layer_channel is not None:
            group, self.group = self.group, None
            try:
                await self.layer.group_discard(group, self.layer_channel)
            except Exception:
                logger.exception("could not leave stream group %s", group)

    # --- Responses -----------------------------------------------------------------------------------

    async def start(self) -> None:
        headers: Headers = [
            (b"content-type", EVENT_STREAM),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            *cors_headers(self.scope),
        ]
        self.started = True
        await self.send_headers(status=200, headers=headers)

    async def write(self, data: bytes, *, more: bool = True) -> None:
        if self.finished:
            return
        self.last_write = asyncio.get_running_loop().time()
        if not more:
            self.finished = True
        await self.send_body(data, more_body=more)

    async def respond_json(self, status: int, body: dict[str, Any], *, headers: Headers | None = None) -> None:
        self.started = True
        all_headers: Headers = [
            (b"content-type", APPLICATION_JSON),
            (b"cache-control", b"no-store"),
            *(headers or []),
            *cors_headers(self.scope),
        ]
        await self.send_headers(status=status, headers=all_headers)
        await self.write(json.dumps(body).encode("utf-8"), more=False)

    async def preflight(self) -> None:
        headers = cors_headers(self.scope)
        if len(headers) > 1:
            headers += [
                (b"access-control-allow-methods", b"GET, OPTIONS"),
                (b"access-control-allow-headers", ALLOWED_REQUEST_HEADERS),
                (b"access-control-max-age", PREFLIGHT_MAX_AGE),
            ]
        self.started = True
        await self.send_headers(status=204, headers=headers)
        await self.write(b"", more=False)


class StreamStatsConsumer(AsyncHttpConsumer):
    """``GET /api/notifications/stream/stats/``: this process's open streams and tasks, for staff only."""

    channel_layer_alias = "notifications.no-layer"  # names no configured layer: nothing to join

    async def handle(self, body: bytes) -> None:
        token = parse_bearer(scope_header(self.scope, b"authorization"))
        try:
            authenticated = await database_sync_to_async(authenticate_access_token)(token)
        except TokenRejected as exc:
            await self.json(401, {"detail": exc.reason, "code": exc.code})
            return
        if not authenticated.user.is_staff:
            await self.json(403, {"detail": "staff only"})
            return
        await self.json(200, registry.snapshot())

    async def json(self, status: int, body: dict[str, Any]) -> None:
        headers = [(b"content-type", APPLICATION_JSON), (b"cache-control", b"no-store")]
        await self.send_response(status, json.dumps(body).encode("utf-8"), headers=headers)
