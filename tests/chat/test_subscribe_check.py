"""The room SUBSCRIBE's membership check: one read for a member, beside the database thread (a reconnect
storm is thousands of them), with every refusal of ``room_enter`` kept; only a public room's join writes."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat import services
from chat.exceptions import NotAllowed, NotFound
from chat.models import Membership, Room
from chat.stomp_destinations import members_only
from stompengine import Denied

User = get_user_model()


@pytest.fixture
def rooms(make_user):
    olive, pete = make_user("olive"), make_user("pete")
    public = services.room_create(creator=olive, name="Plaza", slug="plaza")
    private = services.room_create(creator=olive, name="Inner", slug="inner", is_private=True)
    services.room_member_add(room=private, actor=olive, username="pete")
    services.room_join(room=public, user=pete)
    return SimpleNamespace(olive=olive, pete=pete, rita=make_user("rita"), public=public, private=private)


def archive(room: Room) -> None:
    Room.objects.filter(pk=room.pk).update(archived="2026-01-01T00:00:00Z")


@pytest.mark.django_db
def test_a_member_is_checked_in_one_query_without_a_write(rooms):
    for room in (rooms.public, rooms.private):
        with CaptureQueriesContext(connection) as queries:
            entered = services.room_enter_member(slug=room.slug, user=rooms.pete)
        assert entered is not None and entered.pk == room.pk
        assert len(queries) == 1 and queries[0]["sql"].lstrip().upper().startswith("SELECT")
        with CaptureQueriesContext(connection) as queries:
            assert services.room_enter(slug=room.slug, user=rooms.pete).pk == room.pk
        assert len(queries) == 1


@pytest.mark.django_db
def test_the_read_refuses_what_room_enter_refuses_and_leaves_joining_to_it(rooms):
    rita = rooms.rita
    for slug, user in (("nowhere", rita), ("inner", rita)):  # unknown and someone else's private room alike
        with pytest.raises(NotFound, match="that you can see"):
            services.room_enter_member(slug=slug, user=user)
        with pytest.raises(NotFound, match="that you can see"):
            services.room_enter(slug=slug, user=user)
    # A public room rita has not joined: the read says "join first", room_enter joins her.
    assert services.room_enter_member(slug="plaza", user=rita) is None
    assert not Membership.objects.filter(room=rooms.public, user=rita).exists()
    assert services.room_enter(slug="plaza", user=rita).pk == rooms.public.pk
    assert Membership.objects.filter(room=rooms.public, user=rita).exists()
    assert services.room_enter_member(slug="plaza", user=rita) is not None


@pytest.mark.django_db
def test_archived_rooms_refuse_members_and_outsiders_as_before(rooms):
    archive(rooms.private)
    archive(rooms.public)
    for slug in ("inner", "plaza"):
        for check in (services.room_enter_member, services.room_enter):
            with pytest.raises(NotAllowed, match="archived"):
                check(slug=slug, user=rooms.pete)
    with pytest.raises(NotFound):  # an outsider of an archived private room still learns nothing
        services.room_enter_member(slug="inner", user=rooms.rita)
    with pytest.raises(NotAllowed, match="archived"):  # nobody joins an archived public room
        services.room_enter(slug="plaza", user=rooms.rita)
    assert not Membership.objects.filter(room=rooms.public, user=rooms.rita).exists()


class Connection:
    """Stands for the STOMP connection: the guard only keys a weak mapping by it."""


def subscribe_ctx(user, slug: str) -> SimpleNamespace:
    return SimpleNamespace(user=user, destination=f"/topic/rooms.{slug}", connection=Connection(), subscription_id="s")


@pytest.mark.django_db(transaction=True)
async def test_a_members_subscribe_does_not_wait_for_the_database_thread_but_a_join_does(rooms):
    """With the one thread-sensitive database thread held, a member's subscribe is still allowed (and a
    refusal still refused); a first join of a public room waits for that thread (a write)."""
    release, held = threading.Event(), threading.Event()

    def hold() -> None:
        held.set()
        release.wait(30)

    blocker = asyncio.ensure_future(database_sync_to_async(hold)())
    try:
        assert await asyncio.to_thread(held.wait, 10)
        for slug in ("plaza", "inner"):
            await asyncio.wait_for(members_only(subscribe_ctx(rooms.pete, slug), slug), 10)
        with pytest.raises(Denied):
            await asyncio.wait_for(members_only(subscribe_ctx(rooms.rita, "inner"), "inner"), 10)
        join = asyncio.ensure_future(members_only(subscribe_ctx(rooms.rita, "plaza"), "plaza"))
        await asyncio.sleep(0.5)
        assert not join.done()  # queued behind the held database thread
        release.set()
        await asyncio.wait_for(join, 10)
    finally:
        release.set()
        await blocker
    assert await Membership.objects.filter(room=rooms.public, user=rooms.rita).aexists()


@pytest.mark.django_db(transaction=True)
async def test_a_burst_of_checks_of_one_room_shares_a_read_and_each_gets_its_own_verdict(make_user):
    """300 subscribes to a private room at once (members, outsiders): far fewer reads than checks, and
    each allowed or refused exactly as its own ``room_enter_member`` would."""
    from chat.stomp_destinations import _member_checks, _member_verdict, _members_among

    @database_sync_to_async
    def prepare():
        owner = make_user("owner")
        room = services.room_create(creator=owner, name="Busy", slug="busy", is_private=True)
        users = User.objects.bulk_create([User(username=f"u{n}", password="!") for n in range(300)])  # no hashing
        Membership.objects.bulk_create([Membership(room=room, user=u) for u in users[::2]])
        return users

    users = await prepare()
    queries = _member_checks.queries
    got = await asyncio.gather(*(_member_checks.fetch("busy", u.pk) for u in users), return_exceptions=True)
    assert _member_checks.queries - queries <= 3
    read = await _members_among("busy", [u.pk for u in users])
    own_check = database_sync_to_async(services.room_enter_member, thread_sensitive=False)
    for n, (user, verdict) in enumerate(zip(users, got, strict=True)):
        if n % 2 == 0:
            own = await own_check(slug="busy", user=user)
            assert verdict.pk == own.pk == _member_verdict("busy", read, user.pk).pk
        else:
            with pytest.raises(NotFound):
                await own_check(slug="busy", user=user)
            assert isinstance(verdict, NotFound) and str(verdict) == "no room 'busy' that you can see"
