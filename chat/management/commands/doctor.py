"""``manage.py doctor``: diagnose a running split-origin deployment (see the doctor package and README)."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatproject.origins import normalize_origin
from doctor import DoctorOptions, run
from doctor.model import DEFAULT_TIMEOUT, CheckResult
from doctor.report import json_report, text_report
from doctor.runner import exit_code

DEFAULTS = DoctorOptions(frontend="", api="")


class Command(BaseCommand):
    help = (
        "Probe a running deployment (any host) for the split-origin chat failures: script order, client "
        "libraries, SockJS info, CORS, mixed content, WebSocket + STOMP, SSE, TLS and clocks. One line per "
        "check; exit status 0 only when nothing FAILs."
    )
    requires_system_checks: list[str] = []  # it diagnoses a remote deployment, not this checkout's settings

    def add_arguments(self, parser: CommandParser) -> None:
        target = parser.add_argument_group("what to probe")
        target.add_argument(
            "--frontend", required=True, help="origin the pages are served from, e.g. https://www.example.com"
        )
        target.add_argument("--api", help="origin of the API, /ws and the stream (default: --frontend)")
        creds = parser.add_argument_group("credentials (to test STOMP CONNECT, SSE and the pages behind login)")
        creds.add_argument("--username")
        creds.add_argument("--password", help="'-' reads it from standard input")
        creds.add_argument("--token", help="an access JWT instead of --username/--password")
        paths = parser.add_argument_group("paths (defaults are this project's routes)")
        paths.add_argument("--sockjs-path", default=DEFAULTS.sockjs_path)
        paths.add_argument("--websocket-path", help="raw STOMP WebSocket (default: SOCKJS_PATH/websocket)")
        paths.add_argument("--sse-path", default=DEFAULTS.sse_path)
        paths.add_argument("--token-path", default=DEFAULTS.token_path)
        paths.add_argument("--ticket-path", default=DEFAULTS.ticket_path)
        paths.add_argument("--rest-path", default=DEFAULTS.rest_path, help="a REST endpoint for the CORS check")
        paths.add_argument("--rooms-path", default=DEFAULTS.rooms_path, help="where to find a room for {room}")
        paths.add_argument("--login-path", default=DEFAULTS.login_path, help="the frontend's login form")
        paths.add_argument(
            "--page",
            dest="pages",
            action="append",
            help="a frontend page path, repeatable; {room} becomes a room slug "
            + f"(default: {' '.join(DEFAULTS.page_paths)})",
        )
        paths.add_argument("--room", help="room slug for {room} (default: the first room of --username)")
        paths.add_argument("--global-script", default=DEFAULTS.global_script, help="file name of the shared script")
        behaviour = parser.add_argument_group("behaviour")
        behaviour.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per network step")
        behaviour.add_argument(
            "--sse-wait", type=float, help="seconds to wait for the first SSE line (default: --timeout)"
        )
        behaviour.add_argument(
            "--insecure", action="store_true", help="skip TLS verification (the TLS check still reports)"
        )
        behaviour.add_argument("--json", action="store_true", help="print one JSON document (for CI)")

    def handle(self, *args: Any, **opts: Any) -> None:
        options = self._options(opts)
        show_progress = opts["verbosity"] > 0

        def progress(done: int, total: int, result: CheckResult) -> None:
            if show_progress:
                self.stderr.write(f"[{done}/{total}] {result.status.value} {result.id} ({result.duration_ms} ms)")

        if show_progress:
            self.stderr.write(f"doctor: probing {options.frontend} and {options.api}…")
        results = run(options, progress=progress)
        if opts["json"]:
            self.stdout.write(json_report(options, results), ending="")
        else:
            self.stdout.write(text_report(options, results, verbose=opts["verbosity"] > 1), ending="")
        code = exit_code(results)
        if code:
            raise CommandError("at least one check failed", returncode=code)

    def _options(self, opts: dict[str, Any]) -> DoctorOptions:
        frontend = self._origin("--frontend", opts["frontend"])
        api = self._origin("--api", opts["api"]) if opts["api"] else frontend
        password = opts["password"]
        if password == "-":
            password = sys.stdin.readline().rstrip("\n")
        if bool(opts["username"]) != bool(password):
            raise CommandError("give --username and --password together (or --token)")
        if opts["timeout"] <= 0:
            raise CommandError("--timeout must be positive")
        return DoctorOptions(
            frontend=frontend,
            api=api,
            username=opts["username"],
            password=password,
            token=opts["token"],
            sockjs_path="/" + opts["sockjs_path"].strip("/"),
            websocket_path=opts["websocket_path"],
            sse_path=opts["sse_path"],
            token_path=opts["token_path"],
            ticket_path=opts["ticket_path"],
            rest_path=opts["rest_path"],
            rooms_path=opts["rooms_path"],
            login_path=opts["login_path"],
            page_paths=tuple(opts["pages"]) if opts["pages"] else DEFAULTS.page_paths,
            room=opts["room"],
            global_script=opts["global_script"],
            timeout=opts["timeout"],
            sse_wait=opts["sse_wait"],
            insecure=opts["insecure"],
        )

    @staticmethod
    def _origin(flag: str, value: str) -> str:
        origin = normalize_origin(value)
        if origin is None or not origin.startswith(("http://", "https://")):
            raise CommandError(f"{flag} {value!r} is not an origin: use http(s)://host[:port] with no path")
        return origin
