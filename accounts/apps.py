from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and tokens"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_save

        from accounts import checks  # noqa: F401  (registers the deploy check)
        from accounts.usernames import user_saved

        # Every way a user is created or renamed (registration, social sign-up, admin, createsuperuser)
        # records the name's skeleton, so the unique index sees them all.
        post_save.connect(user_saved, sender=get_user_model(), dispatch_uid="accounts-username-skeleton")
