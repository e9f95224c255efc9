"""Admin for rooms (with their memberships inline) and messages (search, filter by room and author)."""

from django.contrib import admin

from chat.models import Membership, Message, Room


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["joined"]


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "kind", "is_private", "creator", "created"]
    list_filter = ["kind", "is_private"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    autocomplete_fields = ["creator"]
    inlines = [MembershipInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "room", "author", "short_body", "created"]
    list_filter = ["room", "author"]
    search_fields = ["body", "author__username", "room__name"]
    autocomplete_fields = ["room", "author"]
    date_hierarchy = "created"
    list_select_related = ["room", "author"]

    @admin.display(description="body")
    def short_body(self, obj: Message) -> str:
        return obj.body[:80]
