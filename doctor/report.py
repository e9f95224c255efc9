"""Formats a doctor run: one line per check for people, one JSON document for CI."""

from __future__ import annotations

import json
from collections.abc import Sequence

from doctor.model import CheckResult, DoctorOptions, Status


def text_report(options: DoctorOptions, results: Sequence[CheckResult], *, verbose: bool = False) -> str:
    width = max(len(r.id) for r in results) if results else 0
    lines = [f"doctor: frontend {options.frontend}  api {options.api}"]
    for r in results:
        lines.append(f"{r.status.value:<4}  {r.id:<{width}}  {r.sentence()}")
        if verbose or r.status is not Status.PASS:
            lines += [f"{'':<4}  {'':<{width}}    {d}" for d in r.details]
    counts = {s: sum(1 for r in results if r.status is s) for s in Status}
    verdict = "FAILED" if counts[Status.FAIL] else "OK"
    lines.append(
        f"{verdict}: {counts[Status.PASS]} passed, {counts[Status.WARN]} warnings, {counts[Status.FAIL]} failed"
    )
    return "\n".join(lines) + "\n"


def json_report(options: DoctorOptions, results: Sequence[CheckResult]) -> str:
    return (
        json.dumps(
            {
                "frontend": options.frontend,
                "api": options.api,
                "ok": not any(r.status is Status.FAIL for r in results),
                "checks": [r.as_dict() for r in results],
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
