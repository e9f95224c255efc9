from django.apps import AppConfig


class IdpConfig(AppConfig):
    name = "tests.social.provider.idp"
    label = "idp"
