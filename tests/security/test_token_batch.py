"""STOMP CONNECT token checks in a burst: the users of many tokens are loaded in one read, and every token
is still accepted or refused on its own (bad signature, expired, deleted or deactivated user)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.tokens import AccessToken

from accounts import stomp_auth
from accounts.tokens import TokenRejected, authenticate_access_token

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_burst_of_connect_checks_shares_reads_and_each_is_judged_alone():
    @database_sync_to_async
    def prepare() -> list[str]:
        model = get_user_model()  # no password hashing: 60 users in one insert
        users = model.objects.bulk_create([model(username=f"burst{n}", password="!") for n in range(60)])
        tokens = [str(AccessToken.for_user(user)) for user in users]
        users[1].is_active = False
        users[1].save()
        users[2].delete()
        expired = AccessToken.for_user(users[3])
        expired.set_exp(lifetime=-timedelta(seconds=5))
        tokens[3] = str(expired)
        tokens[4] = tokens[4][:-3] + ("AAA" if not tokens[4].endswith("AAA") else "BBB")
        return tokens + tokens[10:20]  # the same user connecting twice (two tabs) is checked twice

    tokens = await prepare()
    queries = stomp_auth._token_users.queries
    got = await asyncio.gather(*(stomp_auth.check_access_token(t) for t in tokens), return_exceptions=True)
    assert stomp_auth._token_users.queries - queries <= 3  # 70 checks, a handful of reads
    for token, result in zip(tokens, got, strict=True):
        try:
            own = await database_sync_to_async(authenticate_access_token)(token)
        except TokenRejected as refused:
            assert isinstance(result, TokenRejected) and (result.code, result.reason) == (refused.code, refused.reason)
        else:
            assert not isinstance(result, BaseException), result
            assert (result.user.pk, result.expires_at) == (own.user.pk, own.expires_at)
    codes = [r.code if isinstance(r, TokenRejected) else "ok" for r in got[:5]]
    assert codes == ["ok", "unauthorized", "unauthorized", "token-expired", "token-invalid"]
