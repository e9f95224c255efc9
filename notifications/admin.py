"""Admin for stored notifications."""

from django.contrib import admin

from notifications.models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["id", "recipient", "kind", "created", "read"]
    list_filter = ["kind", "read"]
    search_fields = ["recipient__username"]
    autocomplete_fields = ["recipient"]
    list_select_related = ["recipient"]
