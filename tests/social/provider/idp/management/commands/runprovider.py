"""Prepare the test provider's database from IDP_SETUP, then serve it (Django's threaded development server).

IDP_SETUP (JSON): {"users": [{"username", "password", "email", "email_verified"}],
"client": {"client_id", "client_secret", "redirect_uris": [...], "name"}}.
"""

from __future__ import annotations

import json
import os

from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand
from oauth2_provider.models import Application

from tests.social.provider.idp.validators import UNVERIFIED_GROUP


class Command(BaseCommand):
    help = "Set up and serve the local OpenID Connect provider of the tests."

    def add_arguments(self, parser):
        parser.add_argument("addrport")

    def handle(self, *args, addrport: str, **options):
        setup = json.loads(os.environ["IDP_SETUP"])
        call_command("migrate", verbosity=0, interactive=False)
        unverified, _ = Group.objects.get_or_create(name=UNVERIFIED_GROUP)
        for spec in setup["users"]:
            user = User.objects.create_user(username=spec["username"], password=spec["password"], email=spec["email"])
            if not spec.get("email_verified", True):
                user.groups.add(unverified)
        client = setup["client"]
        Application.objects.create(
            name=client.get("name", "Chat"),
            client_id=client["client_id"],
            client_secret=client["client_secret"],  # stored hashed by django-oauth-toolkit
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
            redirect_uris=" ".join(client["redirect_uris"]),
            algorithm=Application.RS256_ALGORITHM,
            skip_authorization=False,  # the consent page is shown, so a test can deny it
        )
        call_command("runserver", addrport, use_reloader=False, use_threading=True, skip_checks=True)
