"""Runs every check concurrently, each under its own time budget, and reports progress as checks finish."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from doctor.checks import CHECKS, Check
from doctor.context import Context
from doctor.model import CheckResult, DoctorOptions, Status

logger = logging.getLogger(__name__)
Progress = Callable[[int, int, CheckResult], None]


async def _run_one(check: Check, ctx: Context) -> CheckResult:
    budget = ctx.options.check_budget
    started = time.monotonic()
    try:
        findings = await asyncio.wait_for(check.run(ctx), budget)
        result = CheckResult.from_findings(check.id, check.title, findings)
    except TimeoutError:
        result = CheckResult(
            check.id,
            check.title,
            Status.FAIL,
            f"the check did not finish within {budget:g}s",
            "check that the origins are reachable, or raise --timeout",
        )
    except Exception as exc:  # a crashed check is one FAIL line, never a crashed run
        logger.exception("doctor check %s crashed", check.id)
        result = CheckResult(
            check.id,
            check.title,
            Status.FAIL,
            f"the check crashed ({type(exc).__name__}: {exc})",
            "report this as a doctor bug",
        )
    result.duration_ms = round((time.monotonic() - started) * 1000)
    return result


async def run_async(
    options: DoctorOptions, *, checks: Sequence[Check] = CHECKS, progress: Progress | None = None
) -> list[CheckResult]:
    ctx = Context(options)
    done = 0

    async def tracked(check: Check) -> CheckResult:
        nonlocal done
        result = await _run_one(check, ctx)
        done += 1
        if progress is not None:
            progress(done, len(checks), result)
        return result

    try:
        return list(await asyncio.gather(*(tracked(c) for c in checks)))
    finally:
        await ctx.aclose()


def run(
    options: DoctorOptions, *, checks: Sequence[Check] = CHECKS, progress: Progress | None = None
) -> list[CheckResult]:
    """Probe the deployment; results come back in report order, whatever order they finished in."""
    return asyncio.run(run_async(options, checks=checks, progress=progress))


def exit_code(results: Sequence[CheckResult]) -> int:
    return 1 if any(r.status is Status.FAIL for r in results) else 0
