"""A Channels channel layer over the broker: groups, channels and flush on the same bus as STOMP.

``CHANNEL_LAYERS = {"default": {"BACKEND": "stompengine.layers.BrokerChannelLayer"}}``. Without
``REDIS_URL`` it is one process's in-memory layer (the broker's local fan-out); with it, messages cross
processes through the broker's Redis bridge, the same two connections per Redis node that carry STOMP.

Every layer name is one broker routing key, so one Redis channel (never a pattern): a group is
``layer:g:<group>``; a process-specific channel (``new_channel()``) is delivered through its runtime's
inbox ``layer:n:<node>``; a plain channel name is ``layer:c:<name>``. Moving the bus to sharded pub/sub
(SSUBSCRIBE/SPUBLISH) is therefore a change inside the bridge.

``group_add`` returns once the group's subscription is live (Redis confirmed the SUBSCRIBE): anything
sent to the group after it returns reaches the channel. That is the confirmation barrier of
``stompengine.gating``. Delivery is at most once (pub/sub): a message sent while Redis is away, or to a
plain channel nobody in any process is receiving yet, is lost, so what must not be lost is stored first
and replayed (the SSE stream's Last-Event-ID, STOMP's ``since-id``).

A channel's queue holds ``capacity`` messages (``send`` to a full channel of this process raises
``ChannelFull``; a full channel drops what a group or another process sends it) for at most ``expiry``
seconds. A consumer that ended without ``group_discard`` (it crashed) leaves its groups once nothing has
received from its channel for ``group_expiry`` seconds (a day, as in channels_redis), so neither its
membership nor the group's subscription outlives it for good; a consumer waiting in ``receive`` never expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from typing import Any

import msgpack
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

from stompengine import runtime as runtimes
from stompengine.broker.broker import Broker
from stompengine.broker.destinations import LAYER_PREFIX
from stompengine.broker.local import Publication

logger = logging.getLogger(__name__)

GROUP_KEY = LAYER_PREFIX + "g:"
NODE_KEY = LAYER_PREFIX + "n:"
CHANNEL_KEY = LAYER_PREFIX + "c:"
SWEEP_EVERY = 256  # new channels between sweeps of the idle ones
SETTLE_TIMEOUT = 5.0  # seconds a send waits for Redis to take the message (then it is given up as lost)


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False)


def _wake(waiter: asyncio.Future[None]) -> None:
    """Wake a receiver, also one waiting on another event loop of this process (the in-memory case)."""
    loop = waiter.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if loop is running:
        waiter.set_result(None)
    elif not loop.is_closed():
        loop.call_soon_threadsafe(_wake_here, waiter)


def _wake_here(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Inbox:
    """One channel's queue in this runtime: (deadline, message) pairs, and the receivers waiting."""

    __slots__ = ("groups", "messages", "touched", "waiters")

    def __init__(self, now: float) -> None:
        self.messages: deque[tuple[float, dict[str, Any]]] = deque()
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.groups: set[str] = set()
        self.touched = now  # created, or last received from

    def idle(self) -> bool:
        return not self.groups and not self.messages and not self.waiters


class _Route:
    """The broker subscriber of one layer key in one runtime: decodes each message once, queues it."""

    __slots__ = ("key", "ready", "state", "target")

    def __init__(self, state: _LayerState, key: str, target: str | None) -> None:
        self.state = state
        self.key = key
        self.target = target  # the group, or the plain channel; None for the node inbox
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def deliver(self, publication: Publication) -> None:
        try:
            message = _unpack(publication.body)
        except Exception:
            logger.warning("dropped an undecodable channel-layer message on %s", self.key)
            return
        state = self.state
        if self.target is None:  # node inbox: [channel, message]
            channel, message = message
            state.put(channel, message, drop=True)
        elif self.key.startswith(GROUP_KEY):
            members = state.groups.get(self.target, ())
            many = len(members) > 1
            for channel in tuple(members):
                state.put(channel, dict(message) if many else message, drop=True)
        else:
            state.put(self.target, message, drop=True)


class _LayerState:
    """The layer's part of one runtime: inboxes, local group members, and the routes subscribed."""

    def __init__(self, layer: BrokerChannelLayer, broker: Broker) -> None:
        self.layer = layer
        self.broker = broker
        self.inboxes: dict[str, _Inbox] = {}
        self.groups: dict[str, set[str]] = {}
        self.routes: dict[str, _Route] = {}
        self.created = 0  # channels made by new_channel(), for the occasional sweep

    def put(self, channel: str, message: dict[str, Any], *, drop: bool) -> None:
        inbox = self.inboxes.get(channel)
        if inbox is None:
            if drop:
                return  # nobody here has that channel (any more)
            inbox = self.inboxes[channel] = _Inbox(time.monotonic())
        self._expire(inbox)
        if len(inbox.messages) >= self.layer.get_capacity(channel):
            if drop:
                logger.warning("channel %s is full; dropped a message", channel)
                return
            raise ChannelFull(channel)
        inbox.messages.append((time.monotonic() + self.layer.expiry, message))
        while inbox.waiters:
            waiter = inbox.waiters.popleft()
            if not waiter.done():
                _wake(waiter)
                break

    def _expire(self, inbox: _Inbox) -> None:
        now = time.monotonic()
        while inbox.messages and inbox.messages[0][0] < now:
            inbox.messages.popleft()

    async def route(self, key: str, target: str | None) -> None:
        """Subscribe ``key`` once; every caller returns when its subscription is live (confirmed)."""
        route = self.routes.get(key)
        if route is not None and route.ready.done():
            return
        if route is None:
            route = self.routes[key] = _Route(self, key, target)
            try:
                await self.broker.subscribe(key, route)
            finally:
                if not route.ready.done():
                    route.ready.set_result(None)
        else:
            await asyncio.shield(route.ready)

    def unroute(self, key: str) -> None:
        route = self.routes.pop(key, None)
        if route is not None:
            self.broker.unsubscribe(key, route)

    def forget_if_idle(self, channel: str) -> None:
        """Drop a plain channel nobody waits on, that is in no group and holds nothing."""
        inbox = self.inboxes.get(channel)
        if inbox is not None and inbox.idle():
            del self.inboxes[channel]
            self.unroute(CHANNEL_KEY + channel)

    def sweep(self) -> None:
        """Forget process-specific channels of consumers that ended: idle ones after the expiry, and ones
        still in groups (a consumer that crashed before its group_discard) after the group expiry."""
        now = time.monotonic()
        stale, abandoned = now - self.layer.expiry, now - self.layer.group_expiry
        for name, inbox in list(self.inboxes.items()):
            if "!" not in name or inbox.waiters:
                continue
            if inbox.groups and inbox.touched < abandoned:
                for group in inbox.groups:
                    self.leave(group, name)
                inbox.groups.clear()
            if inbox.touched < stale and inbox.idle():
                del self.inboxes[name]

    def leave(self, group: str, channel: str) -> None:
        """Take ``channel`` out of ``group``'s members here; the last one ends the group's subscription."""
        members = self.groups.get(group)
        if members is not None:
            members.discard(channel)
            if not members:
                del self.groups[group]
                self.unroute(GROUP_KEY + group)

    def close(self) -> None:
        for key in list(self.routes):
            self.unroute(key)
        for inbox in self.inboxes.values():
            for waiter in inbox.waiters:
                waiter.cancel()
        self.inboxes.clear()
        self.groups.clear()


class BrokerChannelLayer(BaseChannelLayer):  # type: ignore[misc]  # channels ships no type hints
    """The Channels channel-layer interface on this process's broker (see the module docstring)."""

    extensions = ["groups", "flush"]

    def __init__(
        self,
        expiry: float = 60,
        capacity: int = 1000,
        channel_capacity: dict[str, int] | None = None,
        group_expiry: float = 86400,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity)
        self.group_expiry = group_expiry
        self.channel_capacity: list[tuple[Any, int]] = self.compile_capacities(self.channel_capacity)
        self._name = f"layer{id(self)}"
        self._local: _LayerState | None = None

    # -- the runtime of the running loop --------------------------------------------------------------------
    def _state(self) -> _LayerState:
        runtime = runtimes.current()
        if runtime.broker.bridge is None:
            # One process, no Redis: every loop of the process shares one in-memory state (a sync view's
            # async_to_sync may run on a loop of its own), on a broker of its own that never leaves the process.
            if self._local is None:
                self._local = _LayerState(self, Broker())
            return self._local
        return runtime.attach(self._name, lambda rt: _LayerState(self, rt.broker))

    @staticmethod
    def _node_of(channel: str) -> str:
        return channel[: channel.index("!")].rsplit(".", 1)[-1]

    async def _publish(self, state: _LayerState, key: str, body: bytes) -> None:
        state.broker.publish_frame(key, key, (), body)
        bridge = state.broker.bridge
        if bridge is not None:
            # Returned means handed to Redis: a caller on a loop that ends next (async_to_sync) loses nothing.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SETTLE_TIMEOUT):
                    await bridge.settled(bridge.queued)

    # -- channels ---------------------------------------------------------------------------------------------
    async def new_channel(self, prefix: str = "specific.") -> str:
        """A channel of this runtime only, receivable at once (its runtime's inbox is subscribed and live)."""
        state = self._state()
        node = state.broker.node
        await state.route(NODE_KEY + node, None)
        name = f"{prefix.rstrip('.')}.{node}!{secrets.token_hex(8)}"
        state.inboxes[name] = _Inbox(time.monotonic())
        state.created += 1
        if state.created % SWEEP_EVERY == 0:
            state.sweep()
        return name

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send to one channel: this runtime's directly; another process's or a plain one over the bus."""
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        state = self._state()
        if "!" in channel:
            node = self._node_of(channel)
            if node == state.broker.node:
                state.put(channel, message, drop=False)
                return
            await self._publish(state, NODE_KEY + node, _pack([channel, message]))
            return
        inbox = state.inboxes.get(channel)
        if inbox is not None and len(inbox.messages) >= self.get_capacity(channel):
            raise ChannelFull(channel)
        await self._publish(state, CHANNEL_KEY + channel, _pack(message))

    async def receive(self, channel: str) -> dict[str, Any]:
        """The next message of ``channel``; a plain channel is subscribed on the bus from the first call on."""
        self.require_valid_channel_name(channel)
        state = self._state()
        inbox = state.inboxes.get(channel)
        if inbox is None:
            inbox = state.inboxes[channel] = _Inbox(time.monotonic())
        if "!" not in channel:
            await state.route(CHANNEL_KEY + channel, channel)
        try:
            while True:
                state._expire(inbox)
                if inbox.messages:
                    inbox.touched = time.monotonic()
                    return inbox.messages.popleft()[1]
                waiter = asyncio.get_running_loop().create_future()
                inbox.waiters.append(waiter)
                try:
                    await waiter
                finally:
                    if not waiter.done():
                        waiter.cancel()
                    with contextlib.suppress(ValueError):
                        inbox.waiters.remove(waiter)
        finally:
            if "!" not in channel:
                state.forget_if_idle(channel)

    # -- groups ---------------------------------------------------------------------------------------------
    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``; returns once the group's subscription here is live (the barrier)."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        state = self._state()
        state.groups.setdefault(group, set()).add(channel)
        inbox = state.inboxes.get(channel)
        if inbox is None:
            inbox = state.inboxes[channel] = _Inbox(time.monotonic())
        inbox.groups.add(group)
        await state.route(GROUP_KEY + group, group)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; the last member here ends the group's subscription."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        state = self._state()
        state.leave(group, channel)
        inbox = state.inboxes.get(channel)
        if inbox is not None:
            inbox.groups.discard(group)
            if "!" not in channel:
                state.forget_if_idle(channel)
            elif not inbox.groups:
                del state.inboxes[channel]  # a consumer leaves its last group as it ends

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send to every member of ``group`` in every process (a full member's copy is dropped)."""
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        state = self._state()
        await self._publish(state, GROUP_KEY + group, _pack(message))

    async def flush(self) -> None:
        """Forget every channel and group of the running loop's runtime and end their subscriptions."""
        if self._local is not None:
            self._local.close()
            self._local = None
        found = runtimes.existing()
        if found is not None:
            state = found.attached(self._name)
            if state is not None:
                state.close()

    async def close(self) -> None:
        """Nothing of its own to close: the runtime closes the bus."""
