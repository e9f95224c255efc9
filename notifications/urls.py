"""Notification REST routes under /api/ (the SSE stream itself is a Channels route, notifications/routing.py)."""

from django.urls import path

from notifications import views

urlpatterns = [
    path("notifications/", views.NotificationListView.as_view(), name="notification-list"),
    path("notifications/ticket/", views.StreamTicketView.as_view(), name="notification-ticket"),
    path("notifications/unread-count/", views.UnreadCountView.as_view(), name="notification-unread-count"),
    path("notifications/read-all/", views.NotificationReadAllView.as_view(), name="notification-read-all"),
    path("notifications/read-room/", views.NotificationReadRoomView.as_view(), name="notification-read-room"),
    path("notifications/<int:notification_id>/read/", views.NotificationReadView.as_view(), name="notification-read"),
]
