"""The search app: its index tables are created by its migrations, per database vendor."""

from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "search"
    verbose_name = "Message search"
