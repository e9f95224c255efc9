"""Every Channels route in one place: the app modules own their consumers, this module orders them."""

from chat.routing import websocket_urlpatterns as chat_websocket
from chatproject.sockjs_mounts import http_urlpatterns as sockjs_http
from chatproject.sockjs_mounts import websocket_urlpatterns as sockjs_websocket
from notifications.routing import http_urlpatterns as notifications_http

http_urlpatterns = [*notifications_http, *sockjs_http]
websocket_urlpatterns = [*chat_websocket, *sockjs_websocket]
