"""Exit 1, saying why, when HOST:PORT cannot be listened on (``make run`` checks before starting the server).

Without it a second ``make run`` logs daphne's listen failure and then hangs instead of exiting.
Usage: python scripts/port_free.py HOST PORT
"""

from __future__ import annotations

import socket
import sys


def port_free(host: str, port: int) -> str | None:
    """None when ``host:port`` can be bound now, else why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def main(argv: list[str]) -> int:
    host, port = argv[1], int(argv[2])
    problem = port_free(host, port)
    if problem is None:
        return 0
    sys.stderr.write(
        f"{host}:{port} is not available ({problem}): another server (a second `make run`?) is using it. "
        f"Stop it, or choose another port: make run PORT={port + 1}\n"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
