"""``GET /api/search/``: parse and check the parameters, call the selector, shape JSON. Every bad parameter is a
JSON 400 naming it; a room the user is not a member of is a 404, whether it exists or not."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from rest_framework.request import Request
from rest_framework.response import Response

from chat.api.serializers import message_json
from chat.api.views import ChatAPIView
from chat.exceptions import InvalidInput
from search.query import QueryError, query_parse
from search.selectors import messages_search


def _moment(request: Request, name: str) -> dt.datetime | None:
    """An ISO 8601 date (midnight, server time zone) or date-time (naive: server time zone)."""
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return None
    try:
        moment = parse_datetime(raw)
        if moment is None:
            day = parse_date(raw)
            moment = dt.datetime.combine(day, dt.time()) if day else None
    except ValueError:
        moment = None
    if moment is None:
        raise InvalidInput(f"{name}={raw!r} is not a date: use YYYY-MM-DD or an ISO 8601 date-time")
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def _positive(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise InvalidInput(f"{name}={raw[:40]!r} is not valid: a positive whole number is expected")
    return int(raw)


class SearchView(ChatAPIView):
    """``?q=`` (words, "phrases", -excluded, or), optional ``room`` (slug), ``from`` / ``before`` (dates),
    ``cursor`` (the previous page's ``next_cursor``) and ``limit``."""

    def get(self, request: Request) -> Response:
        try:
            query = query_parse(request.query_params.get("q", ""), max_length=settings.SEARCH_QUERY_MAX_LENGTH)
        except QueryError as exc:
            raise InvalidInput(str(exc)) from None
        since, before = _moment(request, "from"), _moment(request, "before")
        if since is not None and before is not None and since >= before:
            raise InvalidInput("from must be earlier than before")
        try:
            cursor = _positive(request, "cursor", None)
        except InvalidInput:
            raise InvalidInput("cursor is not valid: pass the next_cursor of the previous page") from None
        limit = min(_positive(request, "limit", None) or settings.SEARCH_PAGE_SIZE, settings.SEARCH_PAGE_MAX)
        room = request.query_params.get("room", "").strip() or None
        page = messages_search(user=request.user, query=query, limit=limit, room_slug=room, since=since,
                               before=before, cursor=cursor)  # fmt: skip
        results = [
            {**message_json(hit.message), "room_name": hit.message.room.name, "highlight": hit.highlight}
            for hit in page.hits
        ]
        next_cursor = str(page.next_cursor) if page.next_cursor is not None else None
        return Response({"results": results, "next_cursor": next_cursor})
