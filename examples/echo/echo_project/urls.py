"""No Django views: everything the example serves is STOMP (echo_project/asgi.py)."""

urlpatterns: list[object] = []
