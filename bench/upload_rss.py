"""The worker's memory while a large file uploads (issue 21): its RSS must not grow by the file's size.

One project server (daphne, as production runs it; uvicorn too with ``--servers``) with file-system
attachment storage; a 50 MB ZIP of random bytes is uploaded to ``POST /api/rooms/bench-0/uploads/`` by
httpx streaming from disk, while a thread samples the server's RSS every 20 ms from /proc. Reported:
RSS before (after a small warm-up upload), the peak during the upload, and after it; the growth is the
peak minus before, and it passes when it stays under a quarter of the file's size. Bounded: one upload per
server, each with a 300 s timeout. Run by ``bench/run.py`` (``make bench``) or alone:
``python -m bench.upload_rss [--quick] [--servers daphne,uvicorn]``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import threading
import time
import zipfile
from pathlib import Path

import httpx

from scripts.processes import rss_kb

logger = logging.getLogger("bench")
FILE_BYTES = 50_000_000
PASS_FRACTION = 0.25  # the growth must stay below this share of the file's size


def make_file(path: Path, size: int) -> Path:
    """A ZIP (stored, not compressed) of random bytes: typed application/zip by its content."""
    if path.exists() and path.stat().st_size >= size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive, archive.open("random.bin", "w") as out:
        left = size - 200
        while left > 0:
            chunk = os.urandom(min(left, 1 << 20))
            out.write(chunk)
            left -= len(chunk)
    return path


class Sampler(threading.Thread):
    """The RSS (kB) of one process every ``interval`` seconds until stopped; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.samples = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                self.peak = max(self.peak, rss_kb(self.pid))
                self.samples += 1
            except (OSError, RuntimeError):
                return
            self._done.wait(self.interval)

    def stop(self) -> int:
        self._done.set()
        self.join(timeout=5)
        return self.peak


def upload(base: str, token: str, path: Path, name: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    with open(path, "rb") as handle:
        response = httpx.post(
            f"{base}/api/rooms/bench-0/uploads/",
            headers={"Authorization": f"Bearer {token}"},
            files={"file": (name, handle, "application/zip")},
            timeout=300,
        )
    return response.status_code, response.json(), time.monotonic() - started


def measure(kind: str, *, database: str, token: str, path: Path, size: int) -> dict:
    from bench import run as bench

    storage = bench.WORK / f"upload-attachments-{kind}"
    env = bench.project_env(
        database,
        ATTACHMENTS_ROOT=str(storage),
        ATTACHMENTS_MAX_FILE_BYTES=str(size + 1_000_000),
        ATTACHMENTS_USER_QUOTA_BYTES=str(10 * size),
        API_ORIGIN="http://127.0.0.1:8000",
    )
    process, port = bench.start_python_server(kind, env, bench.WORK / f"upload-rss-{kind}.log")
    base = f"http://127.0.0.1:{port}"
    try:
        small = io.BytesIO()
        with zipfile.ZipFile(small, "w") as archive:
            archive.writestr("warm.txt", "warm-up")
        warm = bench.WORK / "warm.zip"
        warm.write_bytes(small.getvalue())
        status, body, _ = upload(base, token, warm, "warm.zip")  # imports and first-request work, not counted
        if status != 201:
            raise RuntimeError(f"the warm-up upload was refused ({status}): {body}")
        time.sleep(1.0)
        before = rss_kb(process.pid)
        logger.info("upload_rss on %s: RSS before %d kB; uploading %d bytes", kind, before, size)
        sampler = Sampler(process.pid)
        sampler.start()
        status, body, seconds = upload(base, token, path, "big.zip")
        peak = sampler.stop()
        if status != 201:
            raise RuntimeError(f"the {size}-byte upload was refused ({status}): {body}")
        time.sleep(2.0)
        after = rss_kb(process.pid)
        growth = (peak - before) * 1024
        result = {
            "server": kind,
            "file_bytes": path.stat().st_size,
            "stored_bytes": body["size"],
            "upload_s": round(seconds, 2),
            "rss_before_kb": before,
            "rss_peak_kb": peak,
            "rss_after_kb": after,
            "growth_bytes": growth,
            "growth_share_of_file": round(growth / path.stat().st_size, 3),
            "samples": sampler.samples,
            "passes": growth < PASS_FRACTION * path.stat().st_size,
        }
        logger.info("upload_rss on %s: %s", kind, json.dumps(result))
        return result
    finally:
        process.terminate()
        process.wait(timeout=30)


def describe(results: list[dict]) -> str:
    lines = [
        "# Worker RSS while a large file uploads (bench/upload_rss.py)",
        "",
        f"Target: the RSS growth stays under {int(PASS_FRACTION * 100)} % of the file's size.",
        "",
        "| server | file | upload | RSS before | peak during | after | growth | share of file | passes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = [
            r["server"],
            f"{r['file_bytes'] / 1e6:.1f} MB",
            f"{r['upload_s']} s",
            *(f"{r[key] / 1024:.1f} MiB" for key in ("rss_before_kb", "rss_peak_kb", "rss_after_kb")),
            f"{r['growth_bytes'] / 1e6:.1f} MB",
            f"{r['growth_share_of_file'] * 100:.1f} %",
            "yes" if r["passes"] else "NO",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from bench import run as bench

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 10 MB file instead of 50 MB")
    parser.add_argument("--servers", default="daphne", help="comma-separated among daphne, uvicorn")
    parser.add_argument("--out", default=str(bench.RESULTS))
    parser.add_argument("--work", default=str(bench.WORK))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[bench %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    bench.WORK = Path(args.work).resolve()
    bench.WORK.mkdir(parents=True, exist_ok=True)
    size = 10_000_000 if args.quick else FILE_BYTES
    path = make_file(bench.WORK / f"upload-{size}.zip", size)
    database = bench.sqlite_url(bench.WORK / "upload.sqlite3")
    tokens = bench.WORK / "upload-tokens.txt"
    bench.prepare_database(database, 1, 1, 1, tokens)
    token = tokens.read_text().split()[0]
    results = [
        measure(kind, database=database, token=token, path=path, size=size) for kind in args.servers.split(",") if kind
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "upload-rss.json").write_text(json.dumps({"quick": args.quick, "results": results}, indent=1))
    table = describe(results)
    (out / "upload-rss.md").write_text(table)
    print(table)
    return 0 if all(r["passes"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
