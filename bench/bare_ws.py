"""The bare reference server of the idle-memory figure: a Python ``websockets`` echo server (plus a broadcast).

Every text message is echoed back (the clients' CONNECT and heart-beat EOLs); a message starting with
``PUBLISH`` goes to every open connection, so "a publish reaching all of them" is measured the same way.
websockets pings every 20 s by default: its heart-beat. Loopback only.

    python -m bench.bare_ws --port 8123
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from websockets.asyncio.server import ServerConnection, broadcast, serve

OPEN: set[ServerConnection] = set()


async def handler(websocket: ServerConnection) -> None:
    OPEN.add(websocket)
    try:
        async for message in websocket:
            if isinstance(message, str) and message.startswith("PUBLISH"):
                broadcast(OPEN, message)
            else:
                await websocket.send(message)
    finally:
        OPEN.discard(websocket)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, subprotocols=["v12.stomp"], compression=None) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    logging.getLogger("websockets").setLevel(logging.CRITICAL)  # clients that abort are not news here
    asyncio.run(main(parser.parse_args().port))
