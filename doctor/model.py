"""Value objects of a doctor run: its options, a check's status and its one-line result."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TIMEOUT = 5.0


class Status(enum.Enum):
    """Outcome of one check; the order is the severity order."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"

    @property
    def rank(self) -> int:
        return {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}[self]


@dataclass(frozen=True)
class Finding:
    """One observation inside a check; the check's line shows the worst one."""

    status: Status
    cause: str
    fix: str = ""

    def sentence(self) -> str:
        """Cause and fix in one sentence, as the report prints it."""
        return f"{self.cause}: {self.fix}" if self.fix else self.cause


@dataclass
class CheckResult:
    """A check's verdict: the worst finding leads, the others are details."""

    id: str
    title: str
    status: Status
    cause: str
    fix: str = ""
    details: list[str] = field(default_factory=list)
    duration_ms: int = 0

    @classmethod
    def from_findings(cls, id: str, title: str, findings: list[Finding]) -> CheckResult:
        if not findings:
            return cls(id, title, Status.PASS, "nothing to check")
        # The last of the worst: a check appends its summary last, so an all-PASS line shows the summary.
        worst = max(reversed(findings), key=lambda f: f.status.rank)
        others = [f"{f.status.value} {f.sentence()}" for f in findings if f is not worst]
        return cls(id, title, worst.status, worst.cause, worst.fix, others)

    def sentence(self) -> str:
        return f"{self.cause}: {self.fix}" if self.fix else self.cause

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status.value,
            "cause": self.cause,
            "fix": self.fix,
            "message": self.sentence(),
            "details": list(self.details),
            "duration_ms": self.duration_ms,
        }


@dataclass(frozen=True)
class DoctorOptions:
    """What to probe and how; the path defaults are this project's own routes."""

    frontend: str
    api: str
    username: str | None = None
    password: str | None = None
    token: str | None = None
    sockjs_path: str = "/ws"
    websocket_path: str | None = None  # default: sockjs_path + "/websocket" (the raw WebSocket)
    sse_path: str = "/api/notifications/stream/"
    token_path: str = "/api/auth/token/"
    ticket_path: str = "/api/notifications/ticket/"
    rest_path: str = "/api/me/"
    rooms_path: str = "/api/rooms/"
    login_path: str = "/login/"
    page_paths: tuple[str, ...] = ("/login/", "/", "/rooms/{room}/")
    room: str | None = None
    global_script: str = "global.js"
    timeout: float = DEFAULT_TIMEOUT
    sse_wait: float | None = None  # default: timeout
    insecure: bool = False
    clock_skew_warn: float = 5.0
    clock_skew_fail: float = 60.0
    cert_warn_days: int = 14

    @property
    def has_credentials(self) -> bool:
        return bool(self.token or (self.username and self.password))

    @property
    def ws_path(self) -> str:
        return self.websocket_path or self.sockjs_path.rstrip("/") + "/websocket"

    @property
    def check_budget(self) -> float:
        """The most a single check may take: a few sequential requests, each bounded by ``timeout``."""
        return 3 * self.timeout + (self.sse_wait or 0)
