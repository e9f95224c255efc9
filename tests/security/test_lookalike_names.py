"""Look-alike user names (issue 16, item 13): refused at registration (REST and form), in the admin and at
social sign-up, by UTS #39 confusable skeletons and its "highly restrictive" script mixing level."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import TEST_PASSWORD

pytestmark = pytest.mark.django_db

CYRILLIC_A = "\u0430"
CYRILLIC_ACE = "\u0430\u0441\u0435"  # three Cyrillic letters that look like "ace"


def register(client, username):
    return client.post(
        "/api/auth/register/", {"username": username, "password": "a-long-passphrase"}, content_type="application/json"
    )


@pytest.mark.parametrize(
    "name",
    [
        f"{CYRILLIC_A}lice",  # mixes Latin and Cyrillic
        "\u0394elta",  # Greek capital delta with Latin
        CYRILLIC_ACE,  # one script, but its skeleton is "ace", an existing name
        "paypa1",  # all Latin, all ASCII: the skeleton of "paypal"
        "ALICE",
    ],
)
def test_registration_refuses_a_name_that_can_pass_for_another(make_user, name):
    make_user("alice"), make_user("ace"), make_user("paypal")
    answer = register(Client(), name)
    assert answer.status_code == 400, answer.content
    assert answer.json()["errors"]["username"]


@pytest.mark.parametrize("name", ["山田たろう", "山田タロウ", "alice山田", "иван", "δοκιμή", "jöhn", "bob.smith@x"])
def test_registration_accepts_single_script_names_and_han_with_kana(make_user, name):
    make_user("alice")
    assert register(Client(), name).status_code == 201


def test_the_html_registration_form_refuses_a_look_alike_too(make_user):
    make_user("ace")
    page = Client().post(
        "/register/", {"username": CYRILLIC_ACE, "password": "a-long-passphrase", "password2": "a-long-passphrase"}
    )
    assert page.status_code == 400 and b"looks like an existing one" in page.content


def test_a_look_alike_cannot_be_stored_even_past_the_checks(make_user):
    from django.db import IntegrityError

    make_user("ace")
    with pytest.raises(IntegrityError):
        make_user(CYRILLIC_ACE)  # the unique skeleton index: concurrent registrations cannot both commit


def test_the_admin_refuses_look_alike_names_when_adding_and_renaming(make_user, django_user_model):
    make_user("ace")
    admin = django_user_model.objects.create_superuser("root", "root@example.test", TEST_PASSWORD)
    client = Client()
    client.force_login(admin)
    added = client.post(
        "/admin/auth/user/add/",
        {"username": CYRILLIC_ACE, "password1": "a-long-passphrase", "password2": "a-long-passphrase",
         "usable_password": "true"},
    )  # fmt: skip
    assert added.status_code == 200 and b"looks like an existing one" in added.content
    assert not django_user_model.objects.filter(username=CYRILLIC_ACE).exists()

    bob = make_user("bob")
    renamed = client.post(
        f"/admin/auth/user/{bob.pk}/change/",
        {"username": f"b{CYRILLIC_A}b", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00", "is_active": "on"},
    )
    assert renamed.status_code == 200 and b"may not mix writing systems" in renamed.content
    bob.refresh_from_db()
    assert bob.username == "bob"


def test_social_sign_up_never_takes_a_look_alike_name(make_user):
    from allauth.account.adapter import get_adapter

    from accounts.social import AccountAdapter

    make_user("ace")
    adapter = get_adapter()
    assert isinstance(adapter, AccountAdapter)
    from django.core.exceptions import ValidationError

    for name in (CYRILLIC_ACE, f"{CYRILLIC_A}lice"):
        for shallow in (False, True):  # shallow: the candidates allauth generates
            with pytest.raises(ValidationError):
                adapter.clean_username(name, shallow=shallow)
    assert adapter.clean_username("acer") == "acer"


def test_social_sign_up_with_a_look_alike_provider_name_gets_another_name(make_user, rf):
    from allauth.socialaccount.adapter import get_adapter
    from allauth.socialaccount.models import SocialAccount, SocialLogin
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from accounts.usernames import username_skeleton

    make_user("ace")
    request = rf.get("/")
    request.session = SessionStore()
    user = get_user_model()(username=CYRILLIC_ACE, email="")
    sociallogin = SocialLogin(user=user, account=SocialAccount(provider="local", uid="123"))
    saved = get_adapter().save_user(request, sociallogin)
    assert saved.pk is not None and saved.username != CYRILLIC_ACE
    assert username_skeleton(saved.username) != username_skeleton("ace")
