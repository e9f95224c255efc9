"""Search (GET /api/search/) on the database of the run: SQLite FTS5 here, PostgreSQL when
test_search_postgres.py runs this module again with DATABASE_URL on a real cluster. Messages are stored
through the writer's batch code (services.message_create), so the index row comes from the same transaction."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from chat import services
from chat.models import Message
from search.backends import backend
from search.indexing import search_reindex, search_remove
from search.query import QueryError, query_parse

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(make_user):
    return {name: make_user(name) for name in ("ann", "bob", "cid", "dan")}


@pytest.fixture
def lobby(people):
    """A public room ann created and bob joined (cid and dan did not)."""
    room = services.room_create(creator=people["ann"], name="Lobby", slug="lobby")
    services.room_join(room=room, user=people["bob"])
    return room


def say(room, user, body: str) -> Message:
    message, created = services.message_create(room=room, author=user, body=body)
    assert created
    return message


def search(auth_client, user, **params):
    response = auth_client(user).get("/api/search/", params)
    assert response["Content-Type"] == "application/json", response.content
    return response


def found(auth_client, user, **params) -> list[str]:
    response = search(auth_client, user, **params)
    assert response.status_code == 200, response.json()
    return [hit["body"] for hit in response.json()["results"]]


def test_the_database_of_this_run_has_its_own_backend():
    assert backend().vendor == connection.vendor


def test_words_are_found_through_their_stems_in_any_case(auth_client, people, lobby):
    say(lobby, people["ann"], "The runners were RUNNING quickly")
    say(lobby, people["ann"], "nothing to see here")
    assert found(auth_client, people["bob"], q="run") == ["The runners were RUNNING quickly"]
    assert found(auth_client, people["bob"], q="Runs") == ["The runners were RUNNING quickly"]


def test_every_word_must_match_and_a_quoted_phrase_keeps_its_order(auth_client, people, lobby):
    say(lobby, people["ann"], "red apple and green pear")
    say(lobby, people["ann"], "green apple")
    say(lobby, people["ann"], "apple pie")
    assert found(auth_client, people["bob"], q="apple green") == ["green apple", "red apple and green pear"]
    assert found(auth_client, people["bob"], q='"green apple"') == ["green apple"]
    assert found(auth_client, people["bob"], q="apple -green") == ["apple pie"]
    assert found(auth_client, people["bob"], q="pear or pie") == ["apple pie", "red apple and green pear"]


def test_results_come_newest_first_and_cursor_pages_have_no_duplicate_and_no_gap(auth_client, people, lobby):
    other = services.room_create(creator=people["bob"], name="Other", slug="other")
    for n in range(53):
        say(lobby if n % 3 else other, people["bob"], f"ticket {n} is open")
        if n % 5 == 0:
            say(lobby, people["ann"], "unrelated chatter")
    expected = list(Message.objects.filter(body__startswith="ticket").order_by("-id").values_list("id", flat=True))
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        params = {"q": "ticket", "limit": 10, **({"cursor": cursor} if cursor else {})}
        page = search(auth_client, people["bob"], **params).json()
        assert len(page["results"]) <= 10
        seen += [hit["id"] for hit in page["results"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


def test_room_and_date_filters(auth_client, people, lobby):
    other = services.room_create(creator=people["bob"], name="Other", slug="other")
    old = say(lobby, people["bob"], "deploy friday old")
    middle = say(other, people["bob"], "deploy friday middle")
    new = say(lobby, people["bob"], "deploy friday new")
    now = timezone.now()
    for message, days in ((old, 30), (middle, 10), (new, 0)):  # ids grow with time, so do their dates
        Message.objects.filter(pk=message.pk).update(created=now - dt.timedelta(days=days))
    bob = people["bob"]
    assert found(auth_client, bob, q="deploy", room="lobby") == ["deploy friday new", "deploy friday old"]
    assert found(auth_client, bob, q="deploy", room="other") == ["deploy friday middle"]
    since = (now - dt.timedelta(days=20)).date().isoformat()
    assert found(auth_client, bob, q="deploy", **{"from": since}) == ["deploy friday new", "deploy friday middle"]
    before = (now - dt.timedelta(days=5)).isoformat()
    assert found(auth_client, bob, q="deploy", before=before) == ["deploy friday middle", "deploy friday old"]
    assert found(auth_client, bob, q="deploy", before=before, **{"from": since}) == ["deploy friday middle"]
    assert found(auth_client, bob, q="deploy", **{"from": (now + dt.timedelta(days=1)).isoformat()}) == []


def test_a_private_rooms_messages_are_found_by_its_members_only(auth_client, people):
    secret = services.room_create(creator=people["ann"], name="Secret", slug="secret", is_private=True)
    services.room_member_add(room=secret, actor=people["ann"], username="bob")
    say(secret, people["ann"], "the launch code is banana")
    assert found(auth_client, people["ann"], q="banana") == ["the launch code is banana"]
    assert found(auth_client, people["bob"], q="banana") == ["the launch code is banana"]
    assert found(auth_client, people["cid"], q="banana") == []
    refused = search(auth_client, people["cid"], q="banana", room="secret")
    assert refused.status_code == 404 and refused.json()["code"] == "not-found"


def test_a_direct_message_is_found_by_its_two_users_only(auth_client, people):
    room, _ = services.direct_room_get_or_create(user=people["ann"], other_username="bob")
    say(room, people["ann"], "psst, mango")
    assert found(auth_client, people["ann"], q="mango") == ["psst, mango"]
    assert found(auth_client, people["bob"], q="mango") == ["psst, mango"]
    assert found(auth_client, people["cid"], q="mango") == []
    assert search(auth_client, people["cid"], q="mango", room=room.slug).status_code == 404


def test_a_public_room_not_joined_is_not_searched_and_leaving_a_room_stops_finding_it(auth_client, people, lobby):
    say(lobby, people["ann"], "kiwi for lunch")
    assert found(auth_client, people["cid"], q="kiwi") == []  # public, but cid is not a member
    assert found(auth_client, people["bob"], q="kiwi") == ["kiwi for lunch"]
    services.room_leave(room=lobby, user=people["bob"])
    assert found(auth_client, people["bob"], q="kiwi") == []
    assert search(auth_client, people["bob"], q="kiwi", room="lobby").status_code == 404
    say(lobby, people["ann"], "kiwi again")  # nor its new messages
    assert found(auth_client, people["bob"], q="kiwi") == []


def test_matches_come_back_as_text_pieces_and_markup_stays_inert_text(auth_client, people, lobby):
    body = '<script>alert("x")</script> <b>Hello</b> hello & "goodbye"'
    say(lobby, people["ann"], body)
    (hit,) = search(auth_client, people["bob"], q="hello").json()["results"]
    assert "".join(piece["text"] for piece in hit["highlight"]) == body == hit["body"]
    assert [p["text"] for p in hit["highlight"] if p["match"]] == ["Hello", "hello"]
    # PostgreSQL's parser skips tags (it does not index "script" in "<script>"); either way the markup is text.
    assert hit["highlight"][0] == {"text": '<script>alert("x")</script> <b>', "match": False}


def test_highlight_marks_stemmed_forms_and_both_words_of_a_phrase(auth_client, people, lobby):
    say(lobby, people["ann"], "Connected? connection connects, disconnect")
    say(lobby, people["ann"], "a blue whale, a whale so blue")
    (hit,) = search(auth_client, people["bob"], q="connecting").json()["results"]
    assert [p["text"] for p in hit["highlight"] if p["match"]] == ["Connected", "connects"] or [
        p["text"] for p in hit["highlight"] if p["match"]
    ] == ["Connected", "connection", "connects"]  # English stemmers differ on -ion
    (hit,) = search(auth_client, people["bob"], q='"blue whale"').json()["results"]
    assert [p["text"] for p in hit["highlight"] if p["match"]] == ["blue", "whale", "whale", "blue"]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({}, "q is empty"),
        ({"q": "   "}, "q is empty"),
        ({"q": "x" * 201}, "at most 200"),
        ({"q": "?!"}, "no word to search for"),
        ({"q": "-alone"}, "no word to search for"),
        ({"q": "a", "cursor": "abc"}, "cursor is not valid"),
        ({"q": "a", "cursor": "-5"}, "cursor is not valid"),
        ({"q": "a", "from": "yesterday"}, "from='yesterday' is not a date"),
        ({"q": "a", "before": "2026-13-45"}, "before='2026-13-45' is not a date"),
        ({"q": "a", "from": "2026-02-02", "before": "2026-02-01"}, "from must be earlier than before"),
        ({"q": "a", "limit": "0"}, "limit='0' is not valid"),
    ],
)
def test_bad_parameters_get_a_json_400_that_names_them(auth_client, people, params, words):
    response = search(auth_client, people["ann"], **params)
    assert response.status_code == 400
    assert words in response.json()["detail"]


def test_an_unknown_room_is_a_json_404_and_anonymous_users_get_401(auth_client, api_client, people):
    response = search(auth_client, people["ann"], q="hello", room="no-such-room")
    assert response.status_code == 404
    assert response.json() == {"detail": "no room 'no-such-room' that you are a member of", "code": "not-found"}
    assert api_client.get("/api/search/", {"q": "hello"}).status_code == 401


def test_fts5_operators_in_the_text_are_searched_as_words(auth_client, people, lobby):
    say(lobby, people["ann"], "body: NEAR the AND gate")
    assert found(auth_client, people["bob"], q='body: NEAR "gate') == ["body: NEAR the AND gate"]
    assert found(auth_client, people["bob"], q="gate*") == ["body: NEAR the AND gate"]
    assert search(auth_client, people["bob"], q="* ( ) ^").status_code == 400


def test_query_parse_splits_words_phrases_exclusions_and_or():
    query = query_parse('red "big dog" -cat or fish', max_length=100)
    assert query.positive_terms == ["red", "big dog", "fish"]
    assert query.fts5() == '("red" AND "big dog" NOT "cat") OR ("fish")'
    assert query_parse('say "hi""', max_length=100).fts5() == '("say" AND "hi")'
    with pytest.raises(QueryError):
        query_parse("or or", max_length=100)


def test_the_index_row_is_written_in_the_messages_transaction_and_rolled_back_with_it(auth_client, people, lobby):
    with pytest.raises(RuntimeError), transaction.atomic():
        say(lobby, people["ann"], "vanishing walrus")
        assert backend().search(query=query_parse("walrus", max_length=50), room_ids=[lobby.pk],
                                bounds=_no_bounds(), limit=5)  # fmt: skip
        raise RuntimeError("roll the batch back")
    assert not Message.objects.filter(body="vanishing walrus").exists()
    say(lobby, people["ann"], "a walrus that stayed")
    assert found(auth_client, people["bob"], q="walrus") == ["a walrus that stayed"]


def _no_bounds():
    from search.backends import Bounds

    return Bounds()


def test_reindex_after_an_edit_and_remove_after_a_delete(auth_client, people, lobby):
    message = say(lobby, people["ann"], "typo teh cat")
    Message.objects.filter(pk=message.pk).update(body="typo the dog")
    message.refresh_from_db()
    search_reindex(message)
    assert found(auth_client, people["bob"], q="cat") == []
    assert found(auth_client, people["bob"], q="dog") == ["typo the dog"]
    search_remove([message.pk])
    assert found(auth_client, people["bob"], q="dog") == []
    search_remove([message.pk])  # idempotent


def test_deleting_messages_or_their_author_leaves_no_index_row(auth_client, people, lobby):
    say(lobby, people["cid"], "orphaned zebra")  # cid joins the public room by writing
    gone = say(lobby, people["ann"], "deleted zebra")
    gone.delete()
    people["cid"].delete()  # cascades to cid's messages
    engine = backend()
    assert engine.search(query=query_parse("zebra", max_length=50), room_ids=[lobby.pk], bounds=_no_bounds(),
                         limit=5) == []  # fmt: skip


def test_search_rebuild_indexes_messages_stored_without_the_index(auth_client, people, lobby, settings):
    settings.SEARCH_INDEX_ON_WRITE = False
    say(lobby, people["ann"], "quiet otter")
    assert found(auth_client, people["bob"], q="otter") == []
    call_command("search_rebuild", verbosity=0)
    assert found(auth_client, people["bob"], q="otter") == ["quiet otter"]
