"""SENDs of a connection: routing to ``/app`` handlers or the broker, transactions, and pipelined answers.

A handler that hands back a ``Completion`` lets the connection read its next frames while the work runs
(up to ``send_pipeline`` of them); the RECEIPTs and refusals still go out strictly in frame order.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from stompengine import metrics
from stompengine.broker.destinations import APP_PREFIX, SEND
from stompengine.connection.subscriptions import SubscriptionsMixin
from stompengine.realtime.registry import Completion, Denied, Rejected, SendContext
from stompengine.stomp.codec import encode
from stompengine.stomp.frames import Frame
from stompengine.stomp.session import SendRequested

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Reply:
    """One place in a connection's reply order: a pipelined SEND's work (its RECEIPT or refusal follows it),
    or ``data`` the session core produced behind it (``task`` None)."""

    task: asyncio.Future[Any] | None
    receipt: str | None = None
    data: bytes = b""
    started: float = 0.0  # when the SEND was taken up (metrics: SEND -> RECEIPT)


class SendsMixin(SubscriptionsMixin):
    """The SEND side of ``StompConnection``."""

    # The /app handler running now (with its SEND's receipt id), and whether a cancellation cut us off from it.
    _inflight: tuple[asyncio.Future[Any], str | None] | None
    _interrupted: bool
    # Pipelined SENDs (a Completion still running) and protocol output queued behind them, in frame order.
    _replies: list[Reply]

    def _context(self, destination: str, send: SendRequested, authorization: str | None) -> SendContext:
        return SendContext(self.handle, destination, send.headers, send.body, authorization, send.receipt)

    async def _route_send(self, send: SendRequested) -> Completion | None:
        """Route one SEND; returns the handler's ``Completion`` when it finishes the SEND later."""
        destination = self._checked(send.destination, SEND)
        if destination.startswith(APP_PREFIX):
            resolved = self._registry.resolve_app(destination)
            if resolved is None:
                raise Denied("unknown destination", f"no application handler for {destination}", code="not-found")
            handler, params = resolved
            authorization = next((v for k, v in send.frame_headers if k.lower() == "authorization"), None)
            context = self._context(destination, send, authorization)
            # Shielded: when the server stops (daphne cancels every application on SIGTERM) the write in
            # progress still finishes, with its after-commit broadcast, while the event loop runs; see shutdown().
            task = asyncio.ensure_future(handler(context, **params))
            self._inflight = (task, send.receipt)
            try:
                result = await asyncio.shield(task)
            except asyncio.CancelledError:
                self._interrupted = True
                raise
            finally:
                if not self._interrupted:
                    self._inflight = None
            return result if isinstance(result, Completion) else None
        self.broker.publish_frame(destination, destination, send.headers, send.body)
        return None

    async def _commit_transaction(self, sends: tuple[SendRequested, ...]) -> None:
        """COMMIT: every SEND with a prepare hook is validated first, then they are committed as one unit
        (all stored or none; a refusal of any refuses the COMMIT); the others are then routed in order."""
        prepared: dict[Any, list[Any]] = {}
        others: list[SendRequested] = []
        for send in sends:
            destination = self._checked(send.destination, SEND)
            found = self._registry.resolve_prepare(destination) if destination.startswith(APP_PREFIX) else None
            if found is None:
                if destination.startswith(APP_PREFIX) and self._registry.resolve_app(destination) is None:
                    raise Denied("unknown destination", f"no application handler for {destination}", code="not-found")
                others.append(send)
                continue
            preparer, params = found
            item = await preparer(self._context(destination, send, None), **params)
            prepared.setdefault(item.commit, []).append(item.item)
        for commit, items in prepared.items():
            await asyncio.shield(commit(items))  # a write in progress finishes even when the server stops
        for send in others:
            completion = await self._route_send(send)
            if completion is not None:
                await asyncio.shield(completion.task)

    # -- pipelined SENDs: RECEIPTs and refusals in frame order -------------------------------------------
    def _pipeline(self, completion: Completion, receipt: str | None, started: float) -> None:
        """Answer this SEND when its work is done, after every SEND before it; go on reading frames meanwhile."""
        self._replies.append(Reply(completion.task, receipt, started=started))
        completion.task.add_done_callback(self._reply_done)

    def _reply_done(self, _task: asyncio.Future[Any]) -> None:
        self._release_replies()

    def _release_replies(self) -> None:
        """Send the answers at the head of the reply order whose work is done (stop at the first still running)."""
        replies = self._replies
        while replies:
            reply = replies[0]
            task = reply.task
            if task is not None and not task.done():
                return
            del replies[0]
            if task is None:
                self._queue_output(reply.data)
                continue
            error = None if task.cancelled() else task.exception()
            if task.cancelled():
                logger.info("STOMP session %s: a SEND's work was cancelled; no RECEIPT", self.session_id)
            elif error is None:
                if reply.receipt is not None:
                    self._queue_output(encode(Frame("RECEIPT", (("receipt-id", reply.receipt),)), self._core.escaping))
                    metrics.receipt_latency(reply.started)
            elif isinstance(error, Rejected):
                self._report_error(error, reply.receipt)
            elif isinstance(error, Denied):
                self.fail(error.message, error.detail, code=error.code, receipt_id=reply.receipt)
            else:
                logger.error("STOMP session %s: finishing a SEND failed", self.session_id, exc_info=error)
                self.fail("internal error", "the server failed to handle this frame", receipt_id=reply.receipt)

    async def _replies_settled(self, deadline: float | None = None, *, keep: int = 0) -> None:
        """Wait until at most ``keep`` pipelined SENDs are unanswered (or ``deadline``, a loop time, passes)."""
        self._release_replies()
        while len(self._replies) > keep:
            timeout = None if deadline is None else deadline - self._loop.time()
            if timeout is not None and timeout <= 0:
                return
            head = self._replies[0].task
            assert head is not None  # protocol output is released as soon as nothing unanswered precedes it
            await asyncio.wait({head}, timeout=timeout)
            self._release_replies()
