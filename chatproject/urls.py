"""URL routes of the Django view stack (Channels routes live in chatproject/routing.py)."""

from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path, re_path

from accounts.urls import api_urlpatterns as account_api
from accounts.urls import page_urlpatterns as account_pages
from accounts.urls import social_urlpatterns as social_login
from chat.admin_views import operations_view
from chatproject import errors, views
from operations.views import metrics_view, readyz

handler404 = "chatproject.errors.not_found"
handler500 = "chatproject.errors.internal_error"

api_urlpatterns = [
    *account_api,
    path("", include("chat.api.urls")),
    path("", include("attachments.urls")),
    path("", include("notifications.urls")),
    path("", include("search.urls")),
    re_path(r"^.*$", errors.not_found),  # JSON 404 under /api/ even with DEBUG on
]

urlpatterns = [
    path("admin/operations/", admin.site.admin_view(operations_view), name="chat-operations"),
    path("admin/", admin.site.urls),
    path("api/", include(api_urlpatterns)),
    path("healthz/", views.healthz, name="healthz"),
    path("readyz/", readyz, name="readyz"),
    path("favicon.ico", views.favicon, name="favicon"),
    re_path(r"^metrics/?$", metrics_view, name="metrics"),
    re_path(r"^ws(?:/.*)?$", errors.not_found),  # SockJS/WebSocket paths that no consumer took: JSON 404
    *account_pages,
    *social_login,
    path("", include("search.page_urls")),
    path("", include("chat.urls")),
]
# With DEBUG on, daphne serves /static/ itself (runserver does this on its own); in production a proxy or
# collectstatic's target does, and this adds nothing.
urlpatterns += staticfiles_urlpatterns()
