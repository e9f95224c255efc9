"""A real S3 API server on 127.0.0.1 (moto's server mode) for tests, `make e2e` and the benchmarks.

``start(log_path)`` runs ``python -m moto.server`` on a free loopback port and waits for it; stop it with
``scripts.processes.stop`` (by PID). ``bucket_create`` makes a bucket through boto3, as production would
find one. Usage as a program (make e2e): ``python -m scripts.s3server PORT BUCKET`` runs in the foreground.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.processes import LOOPBACK, free_port, port_open, stop

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
REGION = "us-east-1"


@dataclass
class S3Server:
    port: int
    process: subprocess.Popen

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def env(self, bucket: str) -> dict[str, str]:
        """The project's settings for this server (chatproject/settings.py reads them)."""
        return {
            "ATTACHMENTS_STORAGE": "s3",
            "ATTACHMENTS_S3_BUCKET": bucket,
            "ATTACHMENTS_S3_ENDPOINT_URL": self.endpoint,
            "ATTACHMENTS_S3_REGION": REGION,
            "ATTACHMENTS_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "ATTACHMENTS_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def stop(self) -> None:
        stop(self.process)


def start(log_path: Path, *, port: int | None = None, timeout: float = 30.0) -> S3Server:
    """Start moto's S3 API server on a free loopback port; raise if it does not listen in ``timeout``."""
    port = port or free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"moto's S3 server did not listen on {LOOPBACK}:{port}; see {log_path}")
        time.sleep(0.1)
    return S3Server(port, process)


def bucket_create(endpoint: str, bucket: str) -> None:
    import boto3

    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY
    )
    client.create_bucket(Bucket=bucket)


def main(argv: list[str]) -> int:
    port, bucket = int(argv[1]), argv[2]
    server = start(Path("test-output") / f"s3-{port}.log", port=port)
    try:
        bucket_create(server.endpoint, bucket)
        sys.stdout.write(f"S3 API server on {server.endpoint}, bucket {bucket}\n")
        sys.stdout.flush()
        server.process.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
