"""The storage quota holds under concurrent uploads: on a real PostgreSQL behind two daphne processes, many
uploads of one user at once never store more than the quota allows, and each refused one gets a clear error
and leaves no file behind."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from django.contrib.auth import get_user_model

from tests.conftest import access_token_for

pytestmark = pytest.mark.live
SIZE = 100_000
QUOTA = 250_000  # room for two uploads of SIZE, not three


@pytest.fixture
def owner(postgres_cluster):
    with psycopg.connect(postgres_cluster.conninfo, autocommit=True) as db:
        db.execute("TRUNCATE attachments_attachment, chat_message, chat_membership, chat_room, auth_user "
                   "RESTART IDENTITY CASCADE")  # fmt: skip
        (user_id,) = db.execute(
            "INSERT INTO auth_user (username, password, is_superuser, is_staff, is_active, first_name, last_name, "
            "email, date_joined) VALUES ('uploader', '!', false, false, true, '', '', '', now()) RETURNING id"
        ).fetchone()
        (room_id,) = db.execute(
            "INSERT INTO chat_room (slug, name, kind, is_private, creator_id, created) "
            "VALUES ('files', 'Files', 'group', false, %s, now()) RETURNING id",
            (user_id,),
        ).fetchone()
        db.execute("INSERT INTO chat_membership (user_id, room_id, role, joined, last_read_message_id) "
                   "VALUES (%s, %s, 'owner', now(), 0)", (user_id, room_id))  # fmt: skip
    yield get_user_model()(id=user_id, username="uploader", is_active=True)  # for its token only
    with psycopg.connect(postgres_cluster.conninfo, autocommit=True) as db:
        db.execute("TRUNCATE attachments_attachment, chat_membership, chat_room, auth_user RESTART IDENTITY CASCADE")


def test_concurrent_uploads_of_one_user_never_pass_the_quota(daphne_factory, postgres_cluster, owner, tmp_path):
    root = tmp_path / "files"
    env = {"DATABASE_URL": postgres_cluster.url, "ATTACHMENTS_ROOT": str(root),
           "ATTACHMENTS_USER_QUOTA_BYTES": str(QUOTA)}  # fmt: skip
    workers = daphne_factory(**env), daphne_factory(**env)
    headers = {"Authorization": f"Bearer {access_token_for(owner)}"}

    def upload(i: int) -> httpx.Response:
        body = b"PK\x03\x04" + os.urandom(SIZE - 4)
        return httpx.post(f"{workers[i % 2].url}/api/rooms/files/uploads/", headers=headers,
                          files={"file": (f"f{i}.zip", body, "application/zip")}, timeout=60)  # fmt: skip

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(upload, range(8)))
    accepted = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    assert len(accepted) == 2, [(r.status_code, r.text) for r in responses]
    assert {r.json()["code"] for r in refused} == {"quota-exceeded"}, [r.text for r in refused]
    with psycopg.connect(postgres_cluster.conninfo) as db:
        (used,) = db.execute("SELECT coalesce(sum(size), 0) FROM attachments_attachment").fetchone()
    assert used == 2 * SIZE
    # A refused upload took its stored file back: only the accepted ones are on disk.
    assert len([p for p in root.rglob("*") if p.is_file()]) == 2
