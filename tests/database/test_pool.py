"""psycopg's connection pool on PostgreSQL (DB_POOL_*): when every pooled connection stays busy, a request is
answered with a clear error once DB_POOL_TIMEOUT has passed; it never hangs."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from tests.conftest import wait_for
from tests.foundation.test_settings import load_settings, settings_json

pytestmark = [pytest.mark.timeout(300)]
POSTGRES_URL = "postgres://chat:secret@127.0.0.1:5432/chat"


def test_postgres_uses_a_pool_by_default_whose_size_and_timeout_come_from_the_environment():
    assert settings_json(DATABASE_URL=POSTGRES_URL)["opts"]["pool"] == {
        "min_size": 2, "max_size": 10, "timeout": 10.0, "name": "chat"
    }  # fmt: skip
    tuned = settings_json(DATABASE_URL=POSTGRES_URL, DB_POOL_MIN_SIZE="0", DB_POOL_MAX_SIZE="3", DB_POOL_TIMEOUT="2.5")
    assert tuned["opts"]["pool"] == {"min_size": 0, "max_size": 3, "timeout": 2.5, "name": "chat"}


def test_db_pool_0_turns_the_pool_off_and_sqlite_never_has_one():
    assert "pool" not in settings_json(DATABASE_URL=POSTGRES_URL, DB_POOL="0")["opts"]
    assert "pool" not in settings_json(DB_POOL="1")["opts"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DB_CONN_MAX_AGE": "60"}, "DB_CONN_MAX_AGE=60 with DB_POOL on"),
        ({"DB_POOL_MIN_SIZE": "5", "DB_POOL_MAX_SIZE": "4"}, "DB_POOL_MAX_SIZE=4 is below DB_POOL_MIN_SIZE=5"),
        ({"DB_POOL_MAX_SIZE": "0"}, "DB_POOL_MAX_SIZE=0 is below its minimum of 1"),
        ({"DB_POOL_TIMEOUT": "0"}, "DB_POOL_TIMEOUT=0.0 is below its minimum"),
    ],
)
def test_pool_settings_that_cannot_work_refuse_to_load(env, message):
    result = load_settings(DATABASE_URL=POSTGRES_URL, **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_db_conn_max_age_still_applies_without_the_pool():
    result = load_settings(DATABASE_URL=POSTGRES_URL, DB_POOL="0", DB_CONN_MAX_AGE="60")
    assert result.returncode == 0, result.stderr


def blocked_on_lock(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as watcher:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%auth_user%'"
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.live
def test_exhausted_pool_answers_503_database_busy_after_its_timeout(postgres_cluster, daphne_factory):
    server = daphne_factory(
        DATABASE_URL=postgres_cluster.url, DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="1", DB_POOL_TIMEOUT="1"
    )
    login = f"{server.url}/api/auth/token/"
    credentials = {"username": "nobody", "password": "not-the-password"}
    with psycopg.connect(postgres_cluster.url) as locker, ThreadPoolExecutor(1) as background:
        # The first login holds the pool's only connection, waiting on a table lock held here.
        locker.execute("LOCK TABLE auth_user IN ACCESS EXCLUSIVE MODE")
        first = background.submit(httpx.post, login, json=credentials, timeout=60)
        wait_for(lambda: blocked_on_lock(postgres_cluster.url), timeout=30, what="the first login to hold the pool")

        second = httpx.post(login, json=credentials, timeout=30)  # far longer than DB_POOL_TIMEOUT: no hang

        assert second.status_code == 503, second.text
        assert second.json()["code"] == "database-busy"
        assert "couldn't get a connection after 1.00 sec" in second.json()["detail"]
        assert second.headers["Retry-After"] == "1"
        locker.rollback()  # the lock goes; the first login finishes normally
        assert first.result().status_code == 401
    assert httpx.post(login, json=credentials, timeout=30).status_code == 401  # the pool serves again
