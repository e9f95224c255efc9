"""Search against real servers: messages SENT over STOMP through the batched writer of two daphne processes
are found at once (their index rows commit with them), on SQLite and on a real PostgreSQL; and the whole of
test_search.py passes again with PostgreSQL as the Django database."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from tests.chat.test_writer_live import ROOMS, client, crowd, errors_of, servers  # noqa: F401 - fixtures
from tests.chat.test_writer_postgres import pg  # noqa: F401 - fixture
from tests.conftest import REPO, access_token_for

pytestmark = [pytest.mark.live, pytest.mark.timeout(600)]


def send_words(senders, per_sender: int) -> None:
    """Every sender SENDs ``per_sender`` searchable messages round robin over ROOMS, pipelined; all RECEIPTed."""
    for n in range(per_sender):
        for i, sender in enumerate(senders):
            body = {"body": f"zephyr number {n} from sender {i}", "client_id": f"z{i}-{n}"}
            sender.send_json(f"/app/rooms.{ROOMS[(n + i) % len(ROOMS)]}", body, receipt=f"z{n}")
    for sender in senders:
        for n in range(per_sender):
            sender.receipt(f"z{n}", timeout=60)
        assert not errors_of(sender)


def search_all(server, user, q: str) -> list[int]:
    """Every page of ``q`` for ``user`` on ``server``, following next_cursor."""
    ids: list[int] = []
    params = {"q": q, "limit": "50"}
    headers = {"Authorization": f"Bearer {access_token_for(user)}"}
    for _ in range(100):
        page = httpx.get(f"{server.url}/api/search/", params=params, headers=headers, timeout=30)
        assert page.status_code == 200, page.text
        ids += [hit["id"] for hit in page.json()["results"]]
        if page.json()["next_cursor"] is None:
            return ids
        params["cursor"] = page.json()["next_cursor"]
    raise AssertionError("more than 100 pages")


def test_messages_stored_by_the_batched_writer_are_found_as_soon_as_they_are_receipted_on_sqlite(servers, crowd):  # noqa: F811
    from chat.models import Message

    one, two = servers()
    senders = [client((one, two)[i % 2], user) for i, user in enumerate(crowd)]
    send_words(senders, 15)
    stored = list(Message.objects.filter(body__startswith="zephyr").order_by("-id").values_list("id", flat=True))
    assert len(stored) == 90
    assert search_all(one, crowd[1], "zephyr") == stored
    assert search_all(two, crowd[2], '"sender 3"') == [
        pk for pk, body in Message.objects.filter(pk__in=stored).order_by("-id").values_list("id", "body")
        if body.endswith("sender 3")
    ]  # fmt: skip


def test_messages_stored_by_the_batched_writer_are_found_as_soon_as_they_are_receipted_on_postgres(
    servers,  # noqa: F811
    pg,  # noqa: F811
    postgres_cluster,
):
    db, users = pg
    one, two = servers(DATABASE_URL=postgres_cluster.url)
    senders = [client((one, two)[i % 2], user) for i, user in enumerate(users)]
    send_words(senders, 15)
    stored = [pk for (pk,) in db.rows("SELECT id FROM chat_message WHERE body LIKE 'zephyr%%' ORDER BY id DESC")]
    assert len(stored) == 90
    assert db.rows("SELECT count(*) FROM search_message") == [(90,)]
    assert search_all(one, users[1], "zephyrs") == stored  # the English stemmer: zephyrs -> zephyr
    db.rows("DELETE FROM chat_membership WHERE user_id = %s AND room_id = "
            "(SELECT id FROM chat_room WHERE slug = 'alpha')", users[1].pk)  # fmt: skip
    alpha = {pk for (pk,) in db.rows("SELECT m.id FROM chat_message m JOIN chat_room r ON r.id = m.room_id "
                                     "WHERE r.slug = 'alpha'")}  # fmt: skip
    assert search_all(two, users[1], "zephyr") == [pk for pk in stored if pk not in alpha]


def test_the_search_tests_pass_with_postgresql_as_the_django_database(postgres_cluster):
    env = {**os.environ, "DATABASE_URL": postgres_cluster.url, "DB_POOL": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/search/test_search.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=500,
    )  # fmt: skip
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:]
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary
