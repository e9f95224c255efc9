"""Chat REST routes under /api/ (every path ends with a slash; clients outside the project rely on them)."""

from django.urls import path

from chat.api import views

urlpatterns = [
    path("rooms/", views.RoomListView.as_view(), name="room-list"),
    path("rooms/<slug:slug>/", views.RoomDetailView.as_view(), name="room-detail"),
    path("rooms/<slug:slug>/join/", views.RoomJoinView.as_view(), name="room-join"),
    path("rooms/<slug:slug>/leave/", views.RoomLeaveView.as_view(), name="room-leave"),
    path("rooms/<slug:slug>/members/", views.RoomMembersView.as_view(), name="room-members"),
    path("rooms/<slug:slug>/members/<str:username>/", views.RoomMemberView.as_view(), name="room-member"),
    path("rooms/<slug:slug>/messages/", views.RoomMessagesView.as_view(), name="room-messages"),
    path("rooms/<slug:slug>/messages/<int:message_id>/", views.MessageDetailView.as_view(), name="room-message"),
    path(
        "rooms/<slug:slug>/messages/<int:message_id>/reactions/",
        views.MessageReactionsView.as_view(),
        name="room-message-reactions",
    ),
    path("rooms/<slug:slug>/read/", views.RoomReadView.as_view(), name="room-read"),
    path("dms/<str:username>/", views.DirectRoomView.as_view(), name="dm"),
    path("users/", views.UserDirectoryView.as_view(), name="user-directory"),
]
