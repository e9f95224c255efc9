"""The registry of application destinations and subscription guards, limits, backpressure, the SockJS adapter.

The connection itself lives in ``stompengine.connection``; handler modules import the registry's names from
``stompengine`` (``from stompengine import app_destination, SendContext, ...``).
"""
