"""Chat pages: thin templates; their data comes from the API (on API_ORIGIN) through global.js and the page scripts."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from chat import selectors
from chat.exceptions import NotFound


def _user(request: HttpRequest) -> User:
    """The signed-in user (``login_required`` lets no anonymous request through)."""
    assert isinstance(request.user, User)
    return request.user


@login_required
def rooms_page(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/rooms.html", {"rooms": selectors.rooms_for_user(user=_user(request))})


@login_required
def room_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The room shell; history, live messages and presence are loaded by chat.js from the API."""
    try:
        room = selectors.room_visible_get(slug=slug, user=_user(request))
    except NotFound as exc:
        raise Http404(str(exc)) from None
    return render(request, "chat/room.html", {"room": room, "max_length": settings.CHAT_MESSAGE_MAX_LENGTH})
