"""Signals of the accounts app: what other apps may react to without accounts knowing them."""

from django.dispatch import Signal

#: A refresh token was blacklisted at logout; sent with ``user_id`` (the token's user).
refresh_token_revoked = Signal()
