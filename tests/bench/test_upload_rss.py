"""`make bench`'s upload memory figure (issue 21): a quick run uploads 10 MB to a real daphne and the
worker's RSS must not grow by anything like the file's size (it grew 13 times the size before
chatproject/daphne_server.py stopped Twisted's form parse and daphne's whole-body queue)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.live
@pytest.mark.timeout(300)
def test_quick_upload_keeps_the_daphne_worker_rss_flat(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench.upload_rss", "--quick", "--servers", "daphne", "--out", str(tmp_path),
         "--work", str(tmp_path / "work")],
        cwd=REPO, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (result,) = json.loads((tmp_path / "upload-rss.json").read_text())["results"]
    assert result["server"] == "daphne" and result["stored_bytes"] == result["file_bytes"] >= 9_000_000
    assert result["passes"] and result["growth_bytes"] < 0.25 * result["file_bytes"], result
    assert result["samples"] > 0
    assert "Worker RSS while a large file uploads" in (tmp_path / "upload-rss.md").read_text()
