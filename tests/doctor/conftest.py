"""Doctor test fixtures: a SQLite test database of this run's own (several people run tests in one tree)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3") and db.get("TEST", {}).get("NAME"):
        db["TEST"]["NAME"] = str(REPO / "var" / f"test-db-doctor-{os.getpid()}.sqlite3")
