"""scripts/postgres.py: a throwaway PostgreSQL cluster that takes password connections over TCP and leaves
nothing behind (no process, no folder) once stopped."""

import psycopg
import pytest

from scripts import postgres
from scripts.processes import port_open

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]


def test_cluster_accepts_a_password_connection_and_leaves_no_process_or_folder_when_stopped():
    with postgres.running(settings={"fsync": "off"}) as cluster:
        assert cluster.url.startswith(f"postgres://chat:{cluster.password}@127.0.0.1:{cluster.port}/chat")
        with psycopg.connect(cluster.url) as connection:
            user, database = connection.execute("SELECT current_user, current_database()").fetchone()
            processes = {cluster.pid, *postgres.children(cluster.pid)}
        assert (user, database) == ("chat", "chat")
        assert len(processes) > 2  # the postmaster and its auxiliary processes
    assert not any(postgres.pid_alive(pid) for pid in processes)
    assert not port_open(cluster.port)
    assert not cluster.root.exists()
    cluster.stop()  # idempotent


def test_role_has_no_superuser_rights_but_a_wrong_password_is_refused():
    with postgres.running(settings={"fsync": "off"}) as cluster:
        with psycopg.connect(cluster.url) as connection:
            assert connection.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'chat'").fetchone() == (False,)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(cluster.url.replace(cluster.password, "wrong"))


def test_missing_postgresql_is_a_clear_error(tmp_path):
    with pytest.raises(postgres.PostgresNotInstalled, match="apt-get install postgresql"):
        postgres.start(roots=tmp_path)
    assert not list(tmp_path.iterdir())
