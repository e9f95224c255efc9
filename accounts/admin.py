"""Admin for one-time codes (read-only: they are issued and used by the code, never by hand)."""

from django.contrib import admin

from accounts.models import OneTimeCode


@admin.register(OneTimeCode)
class OneTimeCodeAdmin(admin.ModelAdmin):
    list_display = ["id", "purpose", "user", "created", "expires", "used"]
    list_filter = ["purpose"]
    readonly_fields = ["purpose", "code_hash", "user", "created", "expires", "used"]

    def has_add_permission(self, request) -> bool:
        return False
