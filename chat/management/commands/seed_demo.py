"""Create demo users and rooms so a new user can log in at once (idempotent; ``--if-empty`` for make run)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from chat import services
from chat.models import Membership, Room

DEMO_PASSWORD = "chat-demo-pass"
DEMO_USERS = ["alice", "bob", "carol"]
ADMIN = ("admin", "admin-demo-pass")


class Command(BaseCommand):
    help = "Create demo users (alice, bob, carol; admin for the admin site) and a few rooms."

    def add_arguments(self, parser):
        parser.add_argument("--if-empty", action="store_true", help="do nothing when any user exists")

    @transaction.atomic
    def handle(self, *args, if_empty: bool = False, **options):
        users_model = get_user_model()
        if if_empty and users_model.objects.exists():
            self.stdout.write("users exist already: demo data not added")
            return
        users = {}
        for name in DEMO_USERS:
            user, created = users_model.objects.get_or_create(username=name, defaults={"email": f"{name}@example.com"})
            if created:
                user.set_password(DEMO_PASSWORD)
                user.save()
            users[name] = user
        admin, created = users_model.objects.get_or_create(
            username=ADMIN[0], defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"}
        )
        if created:
            admin.set_password(ADMIN[1])
            admin.save()
        for slug, name, private, owner, members in [
            ("general", "General", False, "alice", ["bob", "carol"]),
            ("random", "Random", False, "bob", ["alice"]),
            ("team", "Team (private)", True, "alice", ["bob"]),
        ]:
            room = Room.objects.filter(slug=slug).first() or services.room_create(
                creator=users[owner], name=name, slug=slug, is_private=private
            )
            for member in members:
                Membership.objects.get_or_create(room=room, user=users[member])
        self.stdout.write(
            self.style.SUCCESS(
                f"demo users {', '.join(DEMO_USERS)} (password {DEMO_PASSWORD!r}); "
                f"admin {ADMIN[0]!r} (password {ADMIN[1]!r}); rooms general, random, team"
            )
        )
