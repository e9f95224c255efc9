"""Account services: registration, JWT pairs, logout, and the single-use codes behind hand-over and tickets."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import OneTimeCode
from accounts.signals import refresh_token_revoked
from accounts.usernames import LOOKS_TAKEN, username_validate

if TYPE_CHECKING:
    from django.contrib.auth.models import User

UserModel = get_user_model()


class CodeRejected(Exception):
    """A one-time code that is unknown, already used or expired (deliberately not saying which)."""


def user_register(*, username: str, password: str, email: str = "") -> User:
    """Create an active user after Django's password validators and the look-alike name rules
    (accounts/usernames.py); raises ValidationError by field."""
    username = username.strip()
    if not username:
        raise ValidationError({"username": ["A username is required."]})
    if UserModel.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": ["That username is taken."]})
    try:
        username_validate(username)
    except ValidationError as exc:
        raise ValidationError({"username": exc.messages}) from None
    candidate = UserModel(username=username, email=email.strip())
    try:
        validate_password(password, user=candidate)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None
    candidate.set_password(password)
    candidate.full_clean(exclude=["password"])
    try:
        with transaction.atomic():  # the user row and its name's skeleton (post_save) commit together
            candidate.save()
    except IntegrityError:  # a concurrent registration took this name or a look-alike of it
        raise ValidationError({"username": [LOOKS_TAKEN]}) from None
    return candidate


def token_pair_for_user(user: User) -> dict[str, str]:
    """The same access/refresh pair an API client gets from ``auth/token/``."""
    refresh = RefreshToken.for_user(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def refresh_token_revoke(*, refresh: str) -> None:
    """Blacklist a refresh token (logout) and send ``refresh_token_revoked``; an invalid token is not an error."""
    with contextlib.suppress(TokenError):
        token = RefreshToken(refresh)  # type: ignore[arg-type]  # the stubs miss that it takes the encoded token
        token.blacklist()
        refresh_token_revoked.send(sender=RefreshToken, user_id=token.get(api_settings.USER_ID_CLAIM))


def refresh_tokens_revoke_all(*, user: User) -> int:
    """Blacklist every outstanding refresh token of ``user`` (the account changed hands); returns how many."""
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

    pending = OutstandingToken.objects.filter(user_id=user.pk, blacklistedtoken__isnull=True)
    created = BlacklistedToken.objects.bulk_create([BlacklistedToken(token=t) for t in pending], ignore_conflicts=True)
    return len(created)


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def one_time_code_issue(*, user: User, purpose: str, ttl_seconds: int, not_after: datetime | None = None) -> str:
    """Store a new single-use code for ``user`` and return it (only its hash is kept).

    ``not_after``: when the credential that bought the code expires; the code never outlives it, and
    keeps it as ``access_expires`` for whoever redeems it.
    """
    code = secrets.token_urlsafe(32)
    now = timezone.now()
    OneTimeCode.objects.filter(expires__lt=now - timedelta(hours=1)).delete()  # keep the table small
    expires = now + timedelta(seconds=ttl_seconds)
    if not_after is not None:
        expires = min(expires, not_after)
    OneTimeCode.objects.create(
        purpose=purpose, code_hash=_hash(code), user=user, expires=expires, access_expires=not_after
    )
    return code


def one_time_code_redeem(*, code: str, purpose: str) -> User:
    """Use a code once: the conditional UPDATE makes a second use fail even on another process."""
    return one_time_code_claim(code=code, purpose=purpose).user


def one_time_code_claim(*, code: str, purpose: str) -> OneTimeCode:
    """``one_time_code_redeem``, returning the code's row (its user, and ``access_expires``)."""
    if not code or len(code) > 200:
        raise CodeRejected()
    now = timezone.now()
    with transaction.atomic():
        claimed = OneTimeCode.objects.filter(
            code_hash=_hash(code), purpose=purpose, used__isnull=True, expires__gt=now
        ).update(used=now)
        if claimed != 1:
            raise CodeRejected()
        entry = OneTimeCode.objects.select_related("user").get(code_hash=_hash(code))
    if not entry.user.is_active:
        raise CodeRejected()
    return entry
