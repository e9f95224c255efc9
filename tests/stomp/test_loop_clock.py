"""LoopClock on a real event loop: the coarse wheel for long timers (never early, at most a tick late, one
loop timer per tick for any number of connections), exact loop timers for short ones."""

from __future__ import annotations

import asyncio

from stompengine.connection.clock import COARSE_FROM, TICK, LoopClock


async def test_a_wheel_timer_fires_after_its_delay_and_at_most_a_tick_late():
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    fired: list[float] = []
    start = loop.time()
    clock.call_later(COARSE_FROM, lambda: fired.append(loop.time()))
    await asyncio.sleep(COARSE_FROM + TICK + 0.5)
    assert len(fired) == 1
    assert fired[0] - start >= COARSE_FROM
    assert fired[0] - start <= COARSE_FROM + TICK + 0.4  # a tick, plus the loop's own lateness on a busy machine


async def test_timers_due_within_one_tick_share_one_loop_timer():
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    fired: list[int] = []
    # The same instant for all (as when a storm of connections set their heart-beats together).
    when = loop.time()
    for n in range(1000):
        clock.call_later(COARSE_FROM + 2 + (when - loop.time()), lambda n=n: fired.append(n))
    assert len(clock._buckets) <= 2  # the timers' ends straddle at most one tick boundary
    assert clock.pending() == 1000


async def test_a_cancelled_wheel_timer_never_runs_and_lets_go_of_its_callback():
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    fired: list[str] = []
    keep = clock.call_later(COARSE_FROM, lambda: fired.append("kept"))
    drop = clock.call_later(COARSE_FROM, lambda: fired.append("dropped"))
    drop.cancel()
    drop.cancel()  # idempotent
    assert clock.pending() == 1
    await asyncio.sleep(COARSE_FROM + TICK + 0.5)
    assert fired == ["kept"]
    keep.cancel()  # after it ran: nothing happens
    assert clock.pending() == 0 and not clock._buckets


async def test_a_failing_callback_is_reported_and_the_others_of_its_tick_still_run():
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    reported: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    fired: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    try:
        clock.call_later(COARSE_FROM, boom)
        clock.call_later(COARSE_FROM, lambda: fired.append("after"))
        await asyncio.sleep(COARSE_FROM + TICK + 0.5)
    finally:
        loop.set_exception_handler(None)
    assert fired == ["after"]
    assert len(reported) == 1 and isinstance(reported[0]["exception"], RuntimeError)


async def test_short_timers_are_the_loops_own_and_exact():
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    fired: list[float] = []
    start = loop.time()
    handle = clock.call_later(0.05, lambda: fired.append(loop.time()))
    assert isinstance(handle, asyncio.TimerHandle)
    assert not clock._buckets
    await asyncio.sleep(0.3)
    assert fired and fired[0] - start >= 0.05


async def test_a_timer_set_again_from_its_own_callback_runs_again():
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    fired: list[float] = []

    def beat() -> None:
        fired.append(loop.time())
        if len(fired) < 2:
            clock.call_later(COARSE_FROM, beat)

    clock.call_later(COARSE_FROM, beat)
    await asyncio.sleep(2 * (COARSE_FROM + TICK) + 0.6)
    assert len(fired) == 2
    assert fired[1] - fired[0] >= COARSE_FROM
