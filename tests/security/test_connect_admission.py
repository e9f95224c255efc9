"""CONNECT admission (a reconnect storm): past the process's rate a CONNECT gets ERROR code:busy and a retry-after."""

from __future__ import annotations

import pytest

from stompengine.realtime.limits import ConnectAdmission, SendLimits
from stompengine.realtime.registry import Denied
from tests.security.fakes import config, open_connection


def refusal(admission: ConnectAdmission, limits: SendLimits, now: float) -> Denied:
    with pytest.raises(Denied) as refused:
        admission.admit(limits, now)
    return refused.value


def test_the_burst_is_admitted_then_busy_with_a_retry_after_that_spreads_the_refused():
    limits = SendLimits(connect_rate=10, connect_burst=3)
    admission = ConnectAdmission()
    for _ in range(3):
        admission.admit(limits, 0.0)
    first = refusal(admission, limits, 0.0)
    assert (first.message, first.code, first.headers) == ("server busy", "busy", (("retry-after", "1"),))
    # Thirty more refused at once: the bucket serves ten a second, so the later ones are sent further out
    # instead of all coming back together after the same second.
    after = [int(dict(refusal(admission, limits, 0.0).headers)["retry-after"]) for _ in range(30)]
    assert after == sorted(after) and after[0] == 1 and after[-1] == 4
    admission.admit(limits, 0.1)  # 0.1 s at 10/s: one token again
    refusal(admission, limits, 0.1)


def test_rate_zero_turns_the_admission_off_and_new_settings_take_effect():
    admission = ConnectAdmission()
    for _ in range(10_000):
        admission.admit(SendLimits(connect_rate=0, connect_burst=1), 0.0)
    tight = SendLimits(connect_rate=1, connect_burst=1)
    admission.admit(tight, 0.0)
    assert refusal(admission, tight, 0.0).code == "busy"


async def test_a_connect_past_the_burst_gets_error_busy_with_retry_after_and_is_closed():
    cfg = config(send_limits=SendLimits(connect_rate=0.01, connect_burst=2))
    for n in range(2):
        _, transport = await open_connection(token=f"user{n}-token", cfg=cfg)
        assert transport.commands() == ["CONNECTED"]
    _, refused = await open_connection(token="user2-token", cfg=cfg)
    assert refused.commands() == ["ERROR"]
    error = refused.errors()[0]
    assert (error.get("message"), error.get("code")) == ("server busy", "busy")
    assert int(error.get("retry-after")) >= 1
    await refused.wait_for(lambda: refused.closed is not None, "the close after ERROR busy")
