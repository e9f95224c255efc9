"""Where a connection's bytes go: the project server under tracemalloc, snapshots on SIGUSR1, compared per connection.

    python -m bench.memory_probe daphne|uvicorn --port P --out DIR    # serves chatproject.asgi on 127.0.0.1:P

Each SIGUSR1 writes ``DIR/snapshot-<n>.pickle``; ``python -m bench.memory_probe compare A B --connections N``
prints the allocation sites that grew between two snapshots, in bytes per connection, and the object
counts by type (gc) that grew. bench/storm.py's ``--probe`` takes one snapshot before and one after the
idle connections open (docs/memory.md has the breakdown).
"""

from __future__ import annotations

import argparse
import gc
import pickle
import signal
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def install(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    taken = [0]

    def snapshot(signum: int, frame: object) -> None:
        gc.collect()
        taken[0] += 1
        taken_snapshot = tracemalloc.take_snapshot()  # first: what follows allocates (a list of every object)
        objects = gc.get_objects()
        types = Counter(type(o).__qualname__ for o in objects)
        # CPython 3.11 keeps up to 29 attribute names in a compact array (~300 bytes) and turns the instance
        # dict into a 1.6 kB one past that: the sizes of the per-connection objects' dicts say which it is.
        dict_sizes = Counter(
            f"{type(o).__qualname__} {sys.getsizeof(o.__dict__)} B"
            for o in objects
            if type(o).__qualname__ in DICT_SIZES_OF and hasattr(o, "__dict__")
        )
        data = {"snapshot": taken_snapshot, "types": types, "dict_sizes": dict_sizes}
        del objects
        (out / f"snapshot-{taken[0]}.pickle").write_bytes(pickle.dumps(data))
        (out / f"snapshot-{taken[0]}.done").write_text("ok")

    signal.signal(signal.SIGUSR1, snapshot)


def serve(server: str, port: int, out: Path) -> None:
    sys.path.insert(0, str(REPO))
    tracemalloc.start(16)
    install(out)
    if server == "uvicorn":
        import uvicorn

        uvicorn.run(
            "chatproject.asgi:application",
            host="127.0.0.1",
            port=port,
            ws="chatproject.uvicorn_ws:SansIOProtocol",
            loop="uvloop",
            http="httptools",
            log_level="warning",
        )
    else:
        from chatproject import daphne_server

        sys.argv = ["daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0", "chatproject.asgi:application"]
        daphne_server.main()


#: Per-connection classes whose instance dict sizes the snapshot records.
DICT_SIZES_OF = {"SansIOProtocol", "StompWebSocketConsumer", "ServerProtocol", "WebSocketProtocol", "HTTPChannel"}
PROJECT = {"stompengine", "chat", "chatproject", "accounts", "sockjs", "operations", "notifications"}


def _package(filename: str) -> str:
    """The top-level package of a source file (site-packages' or the project's), or the stdlib module."""
    path = Path(filename)
    parts = path.parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    if str(REPO) in filename:
        return Path(filename).relative_to(REPO).parts[0]
    return f"stdlib:{path.stem}"


def compare(first: Path, second: Path, connections: int, top: int) -> str:
    a, b = (pickle.loads(p.read_bytes()) for p in (first, second))
    lines = [f"allocation sites that grew, bytes per connection ({connections} connections):"]
    stats = b["snapshot"].compare_to(a["snapshot"], "traceback")
    total = sum(s.size_diff for s in stats)
    lines.append(f"total traced growth: {total / connections:.0f} B per connection")
    # By package of the allocating line (the innermost frame), then by the first frame in the project.
    by_package: Counter[str] = Counter()
    by_project_frame: Counter[str] = Counter()
    for stat in stats:
        frames = list(stat.traceback)
        by_package[_package(frames[-1].filename)] += stat.size_diff
        mine = next((f for f in reversed(frames) if _package(f.filename) in PROJECT), None)
        by_project_frame[f"{_package(mine.filename)}/{Path(mine.filename).name}:{mine.lineno}" if mine else "-"] += (
            stat.size_diff
        )
    lines.append("")
    lines.append("by package of the allocating line:")
    for name, size in by_package.most_common(15):
        lines.append(f"{size / connections:8.0f} B  {name}")
    lines.append("")
    lines.append("by the innermost project frame on the allocation's stack (- : none in the project):")
    for name, size in by_project_frame.most_common(20):
        lines.append(f"{size / connections:8.0f} B  {name}")
    lines.append("")
    lines.append("top allocation sites (innermost frame first):")
    for stat in stats[:top]:
        if stat.size_diff <= 0:
            continue
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in list(reversed(stat.traceback))[:5])
        lines.append(f"{stat.size_diff / connections:8.0f} B  {stat.count_diff / connections:5.2f} blocks  {where}")
    lines.append("")
    lines.append("instance dict sizes at the second snapshot (objects):")
    for name, count in sorted(b.get("dict_sizes", {}).items()):
        lines.append(f"{count:8d}  {name}")
    lines.append("")
    lines.append("objects (gc-tracked) that grew, per connection:")
    grown = {t: b["types"][t] - a["types"].get(t, 0) for t in b["types"]}
    for name, diff in sorted(grown.items(), key=lambda kv: -kv[1])[:top]:
        if diff > 0:
            lines.append(f"{diff / connections:6.2f}  {name}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["daphne", "uvicorn", "compare"])
    parser.add_argument("files", nargs="*")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", default="var/bench/probe")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    if args.mode == "compare":
        sys.stdout.write(compare(Path(args.files[0]), Path(args.files[1]), args.connections, args.top) + "\n")
    else:
        serve(args.mode, args.port, Path(args.out))


if __name__ == "__main__":
    main()
