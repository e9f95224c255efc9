"""django-allauth adapters: when a social identity joins an existing account, and failed social logins shown
on the login page instead of allauth's own pages.

A successful social login ends in Django's ``login()``, so the ``user_logged_in`` receiver in
``accounts/views.py`` stores the same one-time JWT hand-over code as a form login does; nothing here deals
with tokens except revoking them when an account changes hands (see ``pre_social_login``).
"""

from __future__ import annotations

import logging

import requests
from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.adapter import get_adapter as get_account_adapter
from allauth.account.internal.userkit import filter_users_by_email
from allauth.account.models import EmailAddress
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialLogin
from allauth.socialaccount.providers.base.constants import AuthError
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponseRedirect
from django.utils.crypto import get_random_string

from accounts import services
from accounts.usernames import username_problems

logger = logging.getLogger(__name__)

# Set on a SocialLogin by authenticate_by_email, read by pre_social_login in the same request.
_LINKED_EMAIL = "chat_linked_email"


def social_error_response(request: HttpRequest, text: str) -> HttpResponseRedirect:
    """Back to the login page, which shows ``text`` above the form (a message, never a URL parameter)."""
    messages.error(request, text, extra_tags="social")
    return HttpResponseRedirect(settings.LOGIN_URL)


def provider_name(provider) -> str:
    return getattr(provider, "name", None) or "the identity provider"


def unreachable_text(name: str) -> str:
    return f"{name} could not be reached, so you are not signed in. Try again later, or log in with your password."


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def authenticate_by_email(self, sociallogin: SocialLogin):
        """An existing account for this identity: only through an address the provider says it verified, and
        only when exactly one active account has that address (several would make the choice a guess)."""
        for address in sociallogin.email_addresses:
            if not address.verified:
                continue
            users = filter_users_by_email(address.email, is_active=True, for_login=True)
            if len(users) == 1:
                setattr(sociallogin, _LINKED_EMAIL, address.email)
                return users[0], address.email
        return None

    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        linked_email = getattr(sociallogin, _LINKED_EMAIL, None)
        if sociallogin.is_existing:
            if linked_email and not _locally_verified(sociallogin.user, linked_email):
                # allauth makes the password unusable here (whoever registered the address without proving
                # it must not keep access, allauth's pre-account-hijacking defence); end their JWTs too.
                revoked = services.refresh_tokens_revoke_all(user=sociallogin.user)
                logger.info(
                    "social login linked %s to user %s by verified e-mail; %d refresh tokens revoked",
                    sociallogin.account.provider, sociallogin.user.pk, revoked,
                )  # fmt: skip
            return
        # A new account. An address that another account already holds stays with that account alone: it
        # was not verified by the provider (or is ambiguous), so it proves nothing and must not be copied.
        kept = [a for a in sociallogin.email_addresses if not filter_users_by_email(a.email, for_login=True)]
        if len(kept) != len(sociallogin.email_addresses):
            taken = {a.email.lower() for a in sociallogin.email_addresses} - {a.email.lower() for a in kept}
            sociallogin.email_addresses = kept
            if (sociallogin.user.email or "").lower() in taken:
                sociallogin.user.email = kept[0].email if kept else ""
            logger.info("social login by %s: new account without an e-mail address another account holds",
                        sociallogin.account.provider)  # fmt: skip

    def save_user(self, request: HttpRequest, sociallogin: SocialLogin, form=None):
        """A new account from a social sign-up: its name never mixes scripts nor looks like another user's.

        allauth offers the provider's name, else one made from the person's name or e-mail address; when
        that still fails the look-alike rules, the account gets ``user-<random>`` (renamable later).
        """
        user = sociallogin.user
        adapter = get_account_adapter(request)
        adapter.populate_username(request, user)
        while username_problems(user.get_username()):
            user.username = f"user-{get_random_string(8, 'abcdefghijkmnpqrstuvwxyz23456789')}"
        with transaction.atomic():  # the user and its name's skeleton commit together
            return super().save_user(request, sociallogin, form)

    def on_authentication_error(self, request, provider, error=None, exception=None, extra_context=None) -> None:
        """Every failed social login returns to the login page with one sentence saying what happened."""
        name = provider_name(provider)
        extra_context = extra_context or {}
        if error == AuthError.CANCELLED:
            text = f"Sign-in with {name} was cancelled. Try again, or log in with your password."
        elif error == AuthError.DENIED:
            text = f"{name} refused the sign-in."
        elif isinstance(exception, requests.RequestException):
            text = unreachable_text(name)
        elif exception is None and "state_id" in extra_context and extra_context.get("state") is None:
            text = (
                f"The sign-in with {name} could not be verified: it expired, or it was started in another "
                "browser or tab. Please try again."
            )
        else:
            text = f"{name} could not sign you in. Please try again, or log in with your password."
        logger.warning(
            "social login with %s failed: error=%s exception=%r", getattr(provider, "id", "?"), error, exception
        )
        raise ImmediateHttpResponse(social_error_response(request, text))


class AccountAdapter(DefaultAccountAdapter):
    """The project's own pages stay the login UI: allauth's account pages and flash messages are not used."""

    def add_message(self, request, level, message_template=None, message_context=None, extra_tags="", message=None):
        """allauth's "Successfully signed in as …" notes would pile up for the next login page: drop them."""

    def clean_username(self, username: str, shallow: bool = False) -> str:
        """allauth's checks, then the look-alike rules (also for the candidates it generates, ``shallow``)."""
        username = super().clean_username(username, shallow=shallow)
        problems = username_problems(username)
        if problems:
            raise ValidationError(problems)
        return username

    def respond_user_inactive(self, request: HttpRequest, user):
        return social_error_response(request, "This account is disabled. Ask an administrator.")


def _locally_verified(user, email: str) -> bool:
    return EmailAddress.objects.filter(user=user, email__iexact=email, verified=True).exists()
