"""Admin for one-time codes (read-only: they are issued and used by the code, never by hand), and the user
admin with each user's linked social identities."""

from allauth.socialaccount.models import SocialAccount
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from accounts.models import OneTimeCode
from accounts.usernames import username_validate


@admin.register(OneTimeCode)
class OneTimeCodeAdmin(admin.ModelAdmin):
    list_display = ["id", "purpose", "user", "created", "expires", "used"]
    list_filter = ["purpose"]
    readonly_fields = ["purpose", "code_hash", "user", "created", "expires", "used"]

    def has_add_permission(self, request) -> bool:
        return False


class SocialAccountInline(admin.TabularInline):
    """The identities (provider + subject) linked to a user; allauth's SocialAccount admin lists all of them."""

    model = SocialAccount
    extra = 0
    fields = ("provider", "uid", "date_joined", "last_login")
    readonly_fields = ("provider", "uid", "date_joined", "last_login")
    can_delete = True  # unlinking an identity is an administrator's decision; creating one is not
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


class LookAlikeNameMixin:
    """The admin refuses the same look-alike and mixed-script names as registration does."""

    def clean_username(self):
        username = super().clean_username() if hasattr(super(), "clean_username") else self.cleaned_data["username"]
        instance = getattr(self, "instance", None)
        username_validate(username, exclude_user_id=instance.pk if instance is not None else None)
        return username


class UserCreationAdminForm(LookAlikeNameMixin, AdminUserCreationForm):
    pass


class UserChangeAdminForm(LookAlikeNameMixin, UserChangeForm):
    pass


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    add_form = UserCreationAdminForm
    form = UserChangeAdminForm
    inlines = [SocialAccountInline]
    list_display = ("username", "email", "first_name", "last_name", "is_staff", "linked_identities")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("socialaccount_set")

    @admin.display(description="linked identities")
    def linked_identities(self, user) -> str:
        return ", ".join(sorted(a.provider for a in user.socialaccount_set.all())) or "—"
