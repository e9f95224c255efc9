"""What most Channels chat tutorials build: each SEND is one ``group_send``; every member formats its own copy.

It speaks just enough STOMP 1.2 for ``bench/loadgen.mjs``: CONNECT (any credentials), SUBSCRIBE with
RECEIPT, SEND, DISCONNECT, heart-beat EOLs. It is the reference point of the benchmark, not a server.
"""

from __future__ import annotations

import hashlib
import itertools

from channels.generic.websocket import AsyncWebsocketConsumer

_ids = itertools.count(1)


def group_name(destination: str) -> str:
    """A valid channel-layer group name for any destination."""
    return "d" + hashlib.sha1(destination.encode(), usedforsecurity=False).hexdigest()


def parse(frame: str) -> tuple[str, dict[str, str], str]:
    head, _, body = frame.partition("\n\n")
    lines = head.split("\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers.setdefault(key, value)
    return lines[0].strip(), headers, body


class GroupSendStompConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        subprotocols = self.scope.get("subprotocols") or []
        await self.accept("v12.stomp" if "v12.stomp" in subprotocols else None)
        self.subscriptions: dict[str, str] = {}  # destination -> subscription id

    async def disconnect(self, code: int) -> None:
        for destination in getattr(self, "subscriptions", {}):
            await self.channel_layer.group_discard(group_name(destination), self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        data = text_data if text_data is not None else (bytes_data or b"").decode()
        for raw in data.split("\0"):
            raw = raw.lstrip("\r\n")
            if raw:
                await self.handle(*parse(raw))

    async def handle(self, command: str, headers: dict[str, str], body: str) -> None:
        if command in ("CONNECT", "STOMP"):
            await self.send("CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\0")
        elif command == "SUBSCRIBE":
            destination = headers["destination"]
            self.subscriptions[destination] = headers.get("id", "0")
            await self.channel_layer.group_add(group_name(destination), self.channel_name)
        elif command == "SEND":
            destination = headers["destination"]
            await self.channel_layer.group_send(
                group_name(destination),
                {"type": "stomp.message", "destination": destination, "body": body,
                 "content_type": headers.get("content-type", "text/plain")},
            )  # fmt: skip
        elif command == "DISCONNECT":
            await self.close()
            return
        if "receipt" in headers:
            await self.send(f"RECEIPT\nreceipt-id:{headers['receipt']}\n\n\0")

    async def stomp_message(self, event: dict) -> None:
        body = event["body"]
        await self.send(
            f"MESSAGE\nsubscription:{self.subscriptions.get(event['destination'], '0')}\n"
            f"destination:{event['destination']}\nmessage-id:{next(_ids)}\n"
            f"content-type:{event['content_type']}\ncontent-length:{len(body.encode())}\n\n{body}\0"
        )
