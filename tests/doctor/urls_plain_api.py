"""A URLconf whose /api/me/ is a plain Django view (not DRF, not exempt): what E002 exists to catch."""

from django.http import JsonResponse
from django.urls import path


def me(request):
    return JsonResponse({"username": request.user.get_username()})


urlpatterns = [path("api/me/", me)]
