"""The search page (HTML shell): static/js/search.js reads the form, calls GET /api/search/ and renders results."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@login_required
def search_page(request: HttpRequest) -> HttpResponse:
    context = {"q": request.GET.get("q", ""), "max_length": settings.SEARCH_QUERY_MAX_LENGTH}
    return render(request, "search/search.html", context)
