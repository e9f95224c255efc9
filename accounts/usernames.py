"""User names that cannot pass for someone else's (Unicode UTS #39, through ICU's spoof checker).

Two rules, for registration, social sign-up and the admin alike:
- a name may use one script, or the combinations UTS #39 calls "highly restrictive" (Latin with Han and
  Hiragana/Katakana, with Han and Bopomofo, or with Han and Hangul), so ``alice`` spelt with a Cyrillic
  ``a`` (U+0430) is refused however many users exist;
- a name whose confusable skeleton (of its case-folded form, as names are case-insensitive here) equals
  another user's is refused: ``ace`` in Cyrillic letters against an existing ``ace``, ``paypa1`` against
  ``paypal``.

The skeleton of every user is kept in ``UsernameSkeleton`` under a unique index, written whenever a user is
saved with a new name (``user_saved`` below, connected in apps.py), in the same transaction: two concurrent
registrations of look-alike names cannot both commit.
"""

from __future__ import annotations

import functools
import logging

import icu
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

logger = logging.getLogger(__name__)

MIXED_SCRIPTS = (
    "A user name may not mix writing systems (such as Latin with Cyrillic or Greek letters); "
    "Han with Hiragana or Katakana, or with Latin, is fine."
)
LOOKS_TAKEN = "That user name looks like an existing one: choose a name nobody can mistake for another."


@functools.cache
def _checker() -> icu.SpoofChecker:
    checker = icu.SpoofChecker()
    checker.setRestrictionLevel(icu.URestrictionLevel.HIGHLY_RESTRICTIVE)
    checker.setChecks(icu.USpoofChecks.RESTRICTION_LEVEL)
    return checker


def username_skeleton(username: str) -> str:
    """The UTS #39 confusable skeleton of the case-folded name: look-alike names share it."""
    return _checker().getSkeleton(0, username.casefold())


def username_scripts_ok(username: str) -> bool:
    """Whether the name stays within UTS #39's highly restrictive level (one script, or Han with Kana …)."""
    return _checker().check(username) == 0


def username_problems(username: str, *, exclude_user_id: int | None = None) -> list[str]:
    """What is wrong with ``username`` as a new name (for the user ``exclude_user_id``, when renaming)."""
    from accounts.models import UsernameSkeleton

    if not username_scripts_ok(username):
        return [MIXED_SCRIPTS]
    clash = UsernameSkeleton.objects.filter(skeleton=username_skeleton(username))
    if exclude_user_id is not None:
        clash = clash.exclude(user_id=exclude_user_id)
    return [LOOKS_TAKEN] if clash.exists() else []


def username_validate(username: str, *, exclude_user_id: int | None = None) -> None:
    """Raise ValidationError with the reasons ``username`` cannot be taken."""
    problems = username_problems(username, exclude_user_id=exclude_user_id)
    if problems:
        raise ValidationError(problems)


def user_saved(sender, instance, created: bool, raw: bool = False, update_fields=None, **kwargs) -> None:
    """post_save: keep the user's skeleton row; a look-alike of another user's name raises IntegrityError."""
    from accounts.models import UsernameSkeleton

    if raw or (update_fields is not None and "username" not in update_fields):
        return
    skeleton = username_skeleton(instance.get_username())
    if not created and UsernameSkeleton.objects.filter(user_id=instance.pk, skeleton=skeleton).exists():
        return
    try:
        with transaction.atomic():
            UsernameSkeleton.objects.update_or_create(user_id=instance.pk, defaults={"skeleton": skeleton})
    except IntegrityError:
        logger.info("refused user name of user %s: it looks like another user's", instance.pk)
        raise
