"""URL routing for long-lived WebSocket connections that leaves nothing of itself behind per connection.

Channels' ``URLRouter`` awaits the routed application, so its frame (and the scope it built) stays
suspended as long as the connection lives; so does the ``async def app`` of ``AsyncConsumer.as_asgi``.
With thousands of idle connections each such layer costs memory for nothing. ``DirectURLRouter`` routes
exactly like ``URLRouter`` but returns the application's coroutine for the server to run, and
``direct_asgi`` builds a consumer's ASGI callable the same way.
"""

from __future__ import annotations

from typing import Any

from channels.routing import URLRouter
from django.urls.exceptions import Resolver404


class DirectURLRouter(URLRouter):
    """``URLRouter`` whose call returns the routed application's awaitable instead of awaiting it."""

    def __call__(self, scope, receive, send):  # type: ignore[override]  # returns the inner awaitable
        path = scope.get("path_remaining", scope.get("path", None))
        if path is None:
            raise ValueError("No 'path' key in connection scope, cannot route URLs")
        if "path_remaining" not in scope:
            root_path = scope.get("root_path", "")
            if root_path and not path.startswith(root_path):
                raise ValueError(f"No route found for path {path!r}.")
            path = path[len(root_path) :]
        path = path.lstrip("/")
        for route in self.routes:
            try:  # as in URLRouter: a nested router that finds nothing lets the next route try
                match = route.pattern.match(path)
                if match:
                    new_path, args, kwargs = match
                    kwargs.update(route.default_args)
                    outer = scope.get("url_route", {})
                    url_route = {"args": outer.get("args", ()) + args, "kwargs": {**outer.get("kwargs", {}), **kwargs}}
                    return route.callback(dict(scope, path_remaining=new_path, url_route=url_route), receive, send)
            except Resolver404:
                continue
        if "path_remaining" in scope:
            raise Resolver404(f"No route found for path {path!r}.")
        raise ValueError(f"No route found for path {path!r}.")


def direct_asgi(consumer_class: type, **initkwargs: Any):
    """A consumer's ASGI callable, like ``as_asgi()``, that returns the new instance's coroutine."""

    def app(scope, receive, send):
        return consumer_class(**initkwargs)(scope, receive, send)

    app.consumer_class = consumer_class  # type: ignore[attr-defined]  # what Channels' tooling looks for
    app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
    return app
