"""SQLite in WAL mode with IMMEDIATE transactions: several processes write at once without 'database is locked'."""

import os
import subprocess
import sys

import pytest

from chat.models import Message, Room
from tests.conftest import REPO

WRITER = """
import django, sys
django.setup()
from django.contrib.auth import get_user_model
from chat import services
from chat.models import Room
user = get_user_model().objects.get(username=sys.argv[1])
room = Room.objects.get(slug="busy")
for i in range(int(sys.argv[2])):
    services.message_create(room=room, author=user, body=f"{sys.argv[1]} {i}", client_id=f"{sys.argv[1]}-{i}")
print("ok")
"""


@pytest.mark.live
def test_concurrent_writers_in_separate_processes_all_succeed(live_db, make_user):
    from chat import services

    writers = [make_user(f"writer{i}") for i in range(3)]
    room = services.room_create(creator=writers[0], name="Busy", slug="busy")
    for writer in writers[1:]:
        services.room_join(room=room, user=writer)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatproject.settings", "DATABASE_URL": f"sqlite:///{live_db}"}
    processes = [
        subprocess.Popen([sys.executable, "-c", WRITER, w.username, "150"], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in writers
    ]  # fmt: skip
    results = [p.communicate(timeout=120) for p in processes]
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err
        assert "database is locked" not in err
        assert out.strip() == "ok"
    assert Message.objects.filter(room=Room.objects.get(slug="busy")).count() == 450
