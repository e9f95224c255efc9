"""``manage.py search_rebuild``: index every stored message again (after changing SEARCH_PG_CONFIG, or after a
load with SEARCH_INDEX_ON_WRITE off)."""

from django.core.management.base import BaseCommand
from django.db import transaction

from search.indexing import search_rebuild


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--database", default="default")

    def handle(self, *args, **options):
        with transaction.atomic(using=options["database"]):
            count = search_rebuild(using=options["database"])
        self.stdout.write(f"indexed {count} messages")
