"""A SockJS 0.3.3 server for Django Channels: WebSocket emulation over HTTP for any message handler.

Mount an endpoint with :class:`sockjs.endpoint.SockJSEndpoint` and give it a handler factory
(see :class:`sockjs.session.Handler`). The package imports nothing from the project's apps.
"""
