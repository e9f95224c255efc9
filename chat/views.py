"""Chat pages: thin templates; live data comes from the API through global.js and the page scripts."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from chat import selectors
from chat.exceptions import NotFound


@login_required
def rooms_page(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/rooms.html", {"rooms": selectors.rooms_for_user(user=request.user)})


@login_required
def room_page(request: HttpRequest, slug: str) -> HttpResponse:
    try:
        room = selectors.room_visible_get(slug=slug, user=request.user)
    except NotFound as exc:
        raise Http404(str(exc)) from None
    messages = selectors.messages_before(room=room, before=None, limit=50)
    return render(request, "chat/room.html", {"room": room, "messages": messages})
