"""A STOMP 1.0-1.2 server for Django Channels: codec, session core, broker, connection, SockJS adapter.

This package imports nothing from the project's apps; the project plugs in its authenticator, its
application destinations and its subscription guards.
"""
