"""Chat pages (HTML). The split-origin frontend talks to /api/ and /ws on API_ORIGIN."""

from django.urls import path

from chat import views

urlpatterns = [
    path("", views.rooms_page, name="rooms"),
    path("rooms/<slug:slug>/", views.room_page, name="room"),
]
