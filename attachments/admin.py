"""Admin: attachments with their size, by room and message; inline on each message."""

from django.contrib import admin
from django.template.defaultfilters import filesizeformat

from attachments.models import Attachment


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "human_size", "content_type", "room", "message_id", "owner", "created"]
    list_filter = ["room", "content_type"]
    search_fields = ["name", "owner__username", "room__name"]
    list_select_related = ["room", "owner"]
    raw_id_fields = ["message"]
    autocomplete_fields = ["room", "owner"]
    # The stored names as text: a file is never linked by a public path (readers get signed URLs).
    exclude = ["file", "thumbnail"]
    readonly_fields = ["stored_as", "size", "content_type", "width", "height", "created"]

    @admin.display(description="stored as")
    def stored_as(self, obj: Attachment) -> str:
        return ", ".join(name for name in (obj.file.name, obj.thumbnail.name) if name)

    @admin.display(description="size", ordering="size")
    def human_size(self, obj: Attachment) -> str:
        return f"{filesizeformat(obj.size)} ({obj.size} bytes)"


class AttachmentInline(admin.TabularInline):
    """The attachments of a message (added to the message admin by chat/admin.py)."""

    model = Attachment
    extra = 0
    can_delete = True
    fields = ("name", "human_size", "content_type", "owner", "created")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # uploads come through the API, which checks their content

    @admin.display(description="size")
    def human_size(self, obj: Attachment) -> str:
        return filesizeformat(obj.size)
