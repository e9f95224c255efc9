"""The benchmark's data in the database of ``DATABASE_URL``: migrate, one user and JWT per connection, the chat
rooms ``bench-<n>`` with their members; prints the project's limits as JSON.

Run as a separate process (bench/run.py does) so that each database gets its own Django settings:

    DATABASE_URL=... SECRET_KEY=... python -m bench.prepare --users 101 --rooms 20 --room-size 5 --tokens t.txt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--rooms", type=int, default=0)
    parser.add_argument("--room-size", type=int, default=5)
    parser.add_argument("--tokens", type=Path, required=True, help="written: one JWT per line, user i on line i")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import AccessToken

    from chat.models import Membership, Room

    call_command("migrate", interactive=False, verbosity=0)
    user_model = get_user_model()
    # One user per connection, so no per-user limit is shared between connections. No password hashing:
    # the benchmark authenticates with JWTs only.
    user_model.objects.bulk_create(
        [user_model(username=f"bench{i}", password="!") for i in range(args.users)], batch_size=500
    )
    people = list(user_model.objects.filter(username__startswith="bench").order_by("id"))
    args.tokens.write_text("".join(f"{AccessToken.for_user(user)}\n" for user in people))
    for number in range(args.rooms):
        members = people[number * args.room_size : (number + 1) * args.room_size]
        room = Room.objects.create(slug=f"bench-{number}", name=f"bench {number}", creator=members[0])
        Membership.objects.bulk_create(
            [
                Membership(room=room, user=user, role=Membership.Role.OWNER if k == 0 else Membership.Role.MEMBER)
                for k, user in enumerate(members)
            ]
        )
    limits = {
        name: getattr(settings, name)
        for name in dir(settings)
        if name.startswith(("STOMP_", "CHAT_", "SOCKJS_", "DB_POOL")) or "RATE" in name or "LIMIT" in name
    }
    limits.pop("STOMP_DESTINATION_RULES", None)
    limits["DATABASE_ENGINE"] = settings.DATABASES["default"]["ENGINE"]
    limits["DATABASE_POOL"] = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    sys.stdout.write(json.dumps(limits, default=str, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
