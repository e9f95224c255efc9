"""Admin for rooms (with their memberships inline) and messages (search, filter by room and author)."""

from django.contrib import admin
from django.db.models import Count, Sum
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

from attachments.admin import AttachmentInline
from chat.models import Membership, Message, Room


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["joined"]


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "kind", "is_private", "creator", "created", "attachment_files"]
    list_filter = ["kind", "is_private", ("archived", admin.EmptyFieldListFilter)]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    autocomplete_fields = ["creator"]
    inlines = [MembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(files=Count("attachments"), files_size=Sum("attachments__size"))

    @admin.display(description="attachments", ordering="files_size")
    def attachment_files(self, obj: Room) -> str:
        """How many files the room holds and their size, linking to them in the attachment list."""
        url = reverse("admin:attachments_attachment_changelist") + f"?room__id__exact={obj.pk}"
        return format_html('<a href="{}">{} ({})</a>', url, obj.files, filesizeformat(obj.files_size or 0))


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "room", "author", "short_body", "created"]
    list_filter = ["room", "author"]
    search_fields = ["body", "author__username", "room__name"]
    autocomplete_fields = ["room", "author"]
    date_hierarchy = "created"
    list_select_related = ["room", "author"]
    inlines = [AttachmentInline]

    @admin.display(description="body")
    def short_body(self, obj: Message) -> str:
        return obj.body[:80]
