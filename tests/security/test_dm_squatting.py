"""DM squatting (issue 16, item 1): a direct room is found by its pair, never by a slug anyone can take;
and a private room's existence does not leak through slug requests (item 12)."""

from __future__ import annotations

import pytest

from chat import services
from chat.models import Membership, Message, Room
from chat.selectors import direct_room_slug
from tests.chat.test_chat_live import run_client
from tests.conftest import access_token_for


@pytest.fixture
def trio(make_user):
    return make_user("alice"), make_user("bob"), make_user("mallory")


def _squat(owner, slug: str, *, is_private: bool) -> Room:
    """A group room holding a DM slug, as the old code let anyone create one (POST /api/rooms/ {"name": slug})."""
    room = Room.objects.create(slug=slug, name=slug, is_private=is_private, creator=owner)
    Membership.objects.create(room=room, user=owner, role=Membership.Role.OWNER)
    return room


@pytest.mark.django_db
def test_a_room_named_like_a_dm_never_gets_the_dm_slug(trio, auth_client):
    alice, bob, mallory = trio
    dm_slug = direct_room_slug(alice.pk, bob.pk)
    attacker = auth_client(mallory)
    for name, private in ((dm_slug, False), (dm_slug.upper(), True), ("DM 7 8", False)):
        response = attacker.post("/api/rooms/", {"name": name, "is_private": private}, format="json")
        assert response.status_code == 201, response.content
        assert not response.json()["slug"].startswith("dm-")
    refused = attacker.post("/api/rooms/", {"name": "x", "slug": dm_slug}, format="json")
    assert refused.status_code == 400 and "not available" in refused.json()["detail"]

    opened = auth_client(alice).post(f"/api/dms/{bob.username}/")
    assert opened.status_code == 201
    assert opened.json()["kind"] == "direct" and opened.json()["slug"] == dm_slug


@pytest.mark.django_db
@pytest.mark.parametrize("is_private", [False, True])
def test_opening_a_dm_whose_slug_is_squatted_gives_the_pair_their_own_room(trio, auth_client, is_private):
    alice, bob, mallory = trio
    squatter = _squat(mallory, direct_room_slug(alice.pk, bob.pk), is_private=is_private)

    opened = auth_client(alice).post(f"/api/dms/{bob.username}/")
    assert opened.status_code == 201, opened.content  # not the squatter's room, and no 500 for a private one
    body = opened.json()
    assert body["kind"] == "direct" and body["slug"] != squatter.slug
    room = Room.objects.get(slug=body["slug"])
    assert set(room.memberships.values_list("user__username", flat=True)) == {"alice", "bob"}
    assert auth_client(bob).post(f"/api/dms/{alice.username}/").json()["slug"] == room.slug

    sent = auth_client(alice).post(f"/api/rooms/{room.slug}/messages/", {"body": "just us"}, format="json")
    assert sent.status_code == 201
    assert auth_client(mallory).get(f"/api/rooms/{room.slug}/messages/").status_code == 404
    assert not Message.objects.filter(room=squatter).exists()


@pytest.mark.live
@pytest.mark.parametrize("is_private", [False, True])
def test_a_stomp_dm_to_a_squatted_pair_is_stored_in_the_pairs_own_room(daphne_server, trio, is_private):
    alice, bob, mallory = trio
    squatter = _squat(mallory, direct_room_slug(alice.pk, bob.pk), is_private=is_private)
    result = run_client({
        "url": f"{daphne_server.ws_url}/ws", "token": access_token_for(alice),
        "send": [{"destination": f"/app/dm.{bob.username}", "body": {"body": "for bob only"}}],
    })  # fmt: skip
    assert result["receipts"] == ["send-0"], result
    message = Message.objects.get(body="for bob only")
    assert message.room_id != squatter.pk
    assert message.room.kind == Room.Kind.DIRECT
    assert set(message.room.memberships.values_list("user__username", flat=True)) == {"alice", "bob"}
    assert not Message.objects.filter(room=squatter).exists()


@pytest.mark.django_db
def test_asking_for_a_private_rooms_slug_does_not_reveal_the_room(make_user, auth_client):
    owner, prober = make_user("owner"), make_user("prober")
    owner_client = auth_client(owner)
    private = owner_client.post("/api/rooms/", {"name": "Layoffs", "is_private": True}, format="json").json()
    public = owner_client.post("/api/rooms/", {"name": "Lobby"}, format="json").json()
    # A private room's derived slug cannot be guessed from its name, so asking for that slug finds nothing.
    assert private["slug"].startswith("layoffs-") and len(private["slug"]) > len("layoffs-")
    probe = auth_client(prober).post("/api/rooms/", {"name": "mine", "slug": "layoffs"}, format="json")
    assert probe.status_code == 201
    # A slug that is taken gets the same answer whoever holds it, and none that names privacy.
    explicit = owner_client.post("/api/rooms/", {"name": "Board", "slug": "board", "is_private": True}, format="json")
    assert explicit.status_code == 201
    answers = [
        auth_client(prober).post("/api/rooms/", {"name": "x", "slug": slug}, format="json")
        for slug in ("board", public["slug"])
    ]
    assert [a.status_code for a in answers] == [400, 400]
    assert answers[0].json()["detail"].replace("board", "S") == answers[1].json()["detail"].replace("lobby", "S")
    assert "private" not in answers[0].json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_migration_repairs_squatted_dm_slugs_and_keys_genuine_dm_rooms(django_user_model):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    start, end = [("chat", "0001_initial")], [("chat", "0002_direct_room_pair")]
    executor.migrate(start)
    old = executor.loader.project_state(start).apps
    old_room, old_membership = old.get_model("chat", "Room"), old.get_model("chat", "Membership")
    old_message = old.get_model("chat", "Message")
    user_model = old.get_model("auth", "User")
    alice, bob, carol, mallory = (user_model.objects.create(username=n) for n in ("alice", "bob", "carol", "mallory"))

    def room(slug, kind, private, owner, *members):
        r = old_room.objects.create(slug=slug, name=slug, kind=kind, is_private=private, creator=owner)
        for m in (owner, *members):
            old_membership.objects.create(room=r, user=m)
        return r

    squatted = room(f"dm-{alice.pk}-{bob.pk}", "group", False, mallory, alice)
    old_message.objects.create(room=squatted, author=alice, body="meant for bob")
    room(f"room-dm-{alice.pk}-{carol.pk}", "group", False, carol)  # the renamed slug is taken: pick the next
    squatted_private = room(f"dm-{alice.pk}-{carol.pk}", "group", True, mallory)
    other_reserved = room("dm-news", "group", False, mallory)
    genuine = room(f"dm-{bob.pk}-{carol.pk}", "direct", True, bob, carol)

    executor = MigrationExecutor(connection)
    executor.migrate(end)
    new = executor.loader.project_state(end).apps
    new_room = new.get_model("chat", "Room")

    renamed = new_room.objects.get(pk=squatted.pk)
    assert (renamed.slug, renamed.kind, renamed.creator_id) == (f"room-dm-{alice.pk}-{bob.pk}", "group", mallory.pk)
    assert new.get_model("chat", "Message").objects.get(body="meant for bob").room_id == renamed.pk
    assert new_room.objects.get(pk=squatted_private.pk).slug == f"room-dm-{alice.pk}-{carol.pk}-2"
    assert new_room.objects.get(pk=other_reserved.pk).slug == "room-dm-news"
    keyed = new_room.objects.get(pk=genuine.pk)
    assert (keyed.direct_low_id, keyed.direct_high_id) == (bob.pk, carol.pk)
    for low, high in ((alice.pk, bob.pk), (alice.pk, carol.pk)):
        dm = new_room.objects.get(kind="direct", direct_low_id=low, direct_high_id=high)
        assert dm.slug == f"dm-{low}-{high}" and dm.is_private
        assert set(dm.memberships.values_list("user_id", flat=True)) == {low, high}
    assert not new_room.objects.filter(kind="group", slug__startswith="dm-").exists()

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db
def test_concurrent_first_dms_share_one_room_by_the_pair_key(trio):
    alice, bob, _ = trio
    first, created = services.direct_room_get_or_create(user=alice, other_username="bob")
    again, created_again = services.direct_room_get_or_create(user=bob, other_username="alice")
    assert created and not created_again and first.pk == again.pk
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Room.objects.create(
            slug="elsewhere", name="x", kind=Room.Kind.DIRECT, is_private=True,
            direct_low_id=min(alice.pk, bob.pk), direct_high_id=max(alice.pk, bob.pk),
        )  # fmt: skip


@pytest.mark.django_db
def test_the_admin_cannot_give_a_group_room_a_reserved_slug(trio, django_user_model):
    from django.test import Client

    from tests.conftest import TEST_PASSWORD

    alice, _, _ = trio
    staff = django_user_model.objects.create_superuser("root", "root@example.test", TEST_PASSWORD)
    client = Client()
    client.force_login(staff)
    answer = client.post(
        "/admin/chat/room/add/",
        {"slug": "dm-1-2", "name": "Squat", "kind": "group", "creator": alice.pk,
         "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"},
    )  # fmt: skip
    assert answer.status_code == 200 and b"kept for direct rooms" in answer.content
    assert not Room.objects.filter(slug="dm-1-2").exists()
