"""Admin for stored notifications, and the announcement action: notify every user or one room's members."""

from __future__ import annotations

import logging
from typing import cast

from django import forms
from django.contrib import admin
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from chat.models import Room
from notifications import services
from notifications.models import Notification

logger = logging.getLogger(__name__)


class AnnouncementForm(forms.Form):
    AUDIENCE_ALL = "all"
    AUDIENCE_ROOM = "room"

    title = forms.CharField(max_length=200, required=False)
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), max_length=services.ANNOUNCEMENT_MAX_LENGTH)
    audience = forms.ChoiceField(
        choices=[(AUDIENCE_ALL, "Every active user"), (AUDIENCE_ROOM, "The members of one room")],
        initial=AUDIENCE_ALL,
        widget=forms.RadioSelect,
    )
    room = forms.ModelChoiceField(queryset=Room.objects.order_by("name"), required=False)

    def clean(self) -> dict:
        data = super().clean() or {}
        if data.get("audience") == self.AUDIENCE_ROOM and not data.get("room"):
            self.add_error("room", "Choose the room whose members get the announcement.")
        return data


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["id", "recipient", "kind", "created", "read"]
    list_filter = ["kind", "read"]
    search_fields = ["recipient__username"]
    autocomplete_fields = ["recipient"]
    list_select_related = ["recipient"]
    actions = ["mark_read"]

    def get_urls(self):
        urls = [
            path(
                "announce/",
                self.admin_site.admin_view(self.announce_view),
                name="notifications_notification_announce",
            ),
        ]
        return urls + super().get_urls()

    @admin.action(description="Mark the selected notifications read")
    def mark_read(self, request: HttpRequest, queryset) -> None:
        updated = queryset.filter(read=False).update(read=True)
        self.message_user(request, f"{updated} notification(s) marked read.")

    def announce_view(self, request: HttpRequest) -> HttpResponse:
        """Send an announcement: stored for every recipient in one transaction, streamed after commit."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = AnnouncementForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            author = cast(AbstractBaseUser, request.user)  # admin_view let only staff in
            try:
                if data["audience"] == AnnouncementForm.AUDIENCE_ROOM:
                    count = services.announcement_create_for_room(
                        room=data["room"], text=data["text"], title=data["title"], author=author
                    )
                    audience = f"the members of {data['room'].name}"
                else:
                    count = services.announcement_create_for_all(text=data["text"], title=data["title"], author=author)
                    audience = "every active user"
            except services.NotificationError as exc:
                form.add_error(None, str(exc))
            else:
                logger.info("%s announced to %s (%d notifications)", request.user, audience, count)
                self.message_user(request, f"Announcement sent to {audience}: {count} notification(s).")
                return HttpResponseRedirect(reverse("admin:notifications_notification_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Send an announcement",
            "form": form,
        }
        return TemplateResponse(request, "admin/notifications/notification/announce.html", context)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra_context = {**(extra_context or {}), "announce_url": reverse("admin:notifications_notification_announce")}
        return super().changelist_view(request, extra_context)
