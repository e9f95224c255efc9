"""Admin for rooms (with their memberships inline) and messages (search, filter by room and author, their edit
history and reactions; a delete leaves a tombstone through the chat writer, broadcast like any other)."""

from django.contrib import admin
from django.db.models import Count, Sum
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

from attachments.admin import AttachmentInline
from chat.models import Membership, Message, MessageEdit, Reaction, Room


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


class MessageEditInline(admin.TabularInline):
    """The texts a message had before its edits (read only: history is not rewritten)."""

    model = MessageEdit
    extra = 0
    fields = readonly_fields = ["replaced", "body"]
    can_delete = False
    verbose_name = "earlier text"

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ReactionInline(admin.TabularInline):
    model = Reaction
    extra = 0
    fields = readonly_fields = ["emoji", "user", "created"]
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "room", "author", "short_body", "created", "edited", "deleted"]
    list_filter = ["room", "author", "deleted"]
    search_fields = ["body", "author__username", "room__name"]
    autocomplete_fields = ["room", "author", "reply_to"]
    date_hierarchy = "created"
    list_select_related = ["room", "author"]
    readonly_fields = ["edited", "deleted"]
    inlines = [AttachmentInline, MessageEditInline, ReactionInline]

    @admin.display(description="body")
    def short_body(self, obj: Message) -> str:
        return "(deleted)" if obj.deleted else obj.body[:80]

    # A delete from the admin is the chat's delete: a tombstone stored by the writer and broadcast to the
    # room (the row stays, so replies and the event stream stay coherent).
    def delete_model(self, request, obj: Message) -> None:
        _delete_through_writer(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        for message in queryset.filter(deleted=False).select_related("room"):
            _delete_through_writer(request, message)


def _delete_through_writer(request, message: Message) -> None:
    from asgiref.sync import async_to_sync
    from django.core.handlers.asgi import ASGIRequest

    from chat import services

    if message.deleted:
        return
    write = services.message_delete_prepare(
        room=message.room, author=request.user, message_id=message.pk, by_staff=True
    )
    if isinstance(request, ASGIRequest):  # under the server: the process's writer, on its loop
        async_to_sync(services.change_submit)(write)
    else:
        services.change_store(write)
