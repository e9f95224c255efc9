"""Shared state of one doctor run: HTTP clients, and the fetches several checks need (the JWT, the frontend
pages, the scripts), each done once and awaited by whoever needs it.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from doctor.model import DoctorOptions, Finding, Status
from doctor.net import describe_error, http_client, join, origin_of
from doctor.pages import Page, parse_page

logger = logging.getLogger(__name__)
T = TypeVar("T")
_CSRF_INPUT = re.compile(r"""name=["']csrfmiddlewaretoken["'][^>]*value=["']([^"']+)""")


@dataclass(frozen=True)
class TokenOutcome:
    """The JWT the run authenticates with, or why there is none."""

    token: str | None
    problem: Finding | None = None
    source: str = ""


@dataclass(frozen=True)
class Fetched:
    """A GET whose body the checks read (a script, a stylesheet)."""

    url: str
    status: int = 0
    content_type: str = ""
    text: str = ""
    location: str = ""
    error: str = ""


@dataclass(frozen=True)
class ServerDate:
    """A server's ``Date`` header and the local time the response arrived (for the clock check)."""

    origin: str
    server: float
    local: float


def is_login_redirect(response: httpx.Response, login_path: str) -> bool:
    location = response.headers.get("location", "")
    path = urlsplit(location).path.lower()
    return response.is_redirect and (path.rstrip("/") == login_path.rstrip("/").lower() or "login" in path)


class Context:
    """One per run; owns the clients and memoises shared fetches as tasks."""

    def __init__(self, options: DoctorOptions) -> None:
        self.options = options
        self.frontend = origin_of(options.frontend)
        self.api = origin_of(options.api)
        self.server_dates: list[ServerDate] = []
        hooks: dict[str, list[Callable[..., Any]]] = {"response": [self._record_date]}
        self.http = http_client(timeout=options.timeout, insecure=options.insecure)
        self.http.event_hooks = hooks
        self.browser = http_client(timeout=options.timeout, insecure=options.insecure, cookies=True)
        self.browser.event_hooks = hooks
        self._memo: dict[str, asyncio.Task[Any]] = {}
        self._login_lock = asyncio.Lock()
        self.logged_in: bool | None = None  # None: not tried

    async def aclose(self) -> None:
        for task in self._memo.values():
            task.cancel()
        await asyncio.gather(*self._memo.values(), return_exceptions=True)
        await self.http.aclose()
        await self.browser.aclose()

    def once(self, key: str, factory: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        """Start ``factory`` the first time ``key`` is asked for; everyone awaits the same task."""
        if key not in self._memo:
            self._memo[key] = asyncio.ensure_future(factory())
        return asyncio.shield(self._memo[key])

    async def _record_date(self, response: httpx.Response) -> None:
        header = response.headers.get("date")
        if not header:
            return
        try:
            server = email.utils.parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError):
            return
        self.server_dates.append(ServerDate(origin_of(str(response.url)), server, time.time()))

    def api_url(self, path: str) -> str:
        return join(self.api, path)

    def frontend_url(self, path: str) -> str:
        return join(self.frontend, path)

    # --- the JWT ------------------------------------------------------------------------------------------

    def token(self) -> Awaitable[TokenOutcome]:
        return self.once("token", self._obtain_token)

    async def _obtain_token(self) -> TokenOutcome:
        o = self.options
        if o.token:
            return TokenOutcome(o.token, source="--token")
        if not (o.username and o.password):
            return TokenOutcome(
                None,
                Finding(
                    Status.WARN,
                    "no credentials given, so the authenticated half of this check was skipped",
                    "run again with --username/--password or --token",
                ),
            )
        url = self.api_url(o.token_path)
        try:
            response = await self.http.post(
                url, json={"username": o.username, "password": o.password}, headers={"Origin": self.frontend}
            )
        except httpx.HTTPError as exc:
            return TokenOutcome(
                None, Finding(Status.FAIL, f"POST {url} failed ({describe_error(exc)})", "check --api and --token-path")
            )
        access = None
        if response.status_code == 200:
            try:
                access = response.json().get("access")
            except ValueError:
                access = None
        if not access:
            return TokenOutcome(
                None,
                Finding(
                    Status.FAIL,
                    f"POST {url} answered {response.status_code} {_content_kind(response)} without an access token",
                    "check the credentials, --token-path, and that the token endpoint is not behind a login redirect",
                ),
            )
        return TokenOutcome(access, source=o.token_path)

    async def ticket(self, token: str) -> tuple[str | None, str]:
        """A fresh SSE ticket (tickets are single-use), or (None, why not)."""
        url = self.api_url(self.options.ticket_path)
        try:
            response = await self.http.post(url, headers={"Authorization": f"Bearer {token}", "Origin": self.frontend})
        except httpx.HTTPError as exc:
            return None, f"POST {url} failed ({describe_error(exc)})"
        if response.status_code in (200, 201):
            try:
                ticket = response.json().get("ticket")
            except ValueError:
                ticket = None
            if ticket:
                return str(ticket), ""
        return None, f"POST {url} answered {response.status_code} {_content_kind(response)} without a ticket"

    # --- frontend pages -----------------------------------------------------------------------------------

    def pages(self) -> Awaitable[list[Page]]:
        return self.once("pages", self._fetch_pages)

    async def _room_slug(self) -> str | None:
        if self.options.room:
            return self.options.room
        outcome = await self.token()
        if not outcome.token:
            return None
        try:
            response = await self.http.get(
                self.api_url(self.options.rooms_path), headers={"Authorization": f"Bearer {outcome.token}"}
            )
            data = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        rooms = data.get("results", data) if isinstance(data, dict) else data
        if isinstance(rooms, list):
            for room in rooms:
                if isinstance(room, dict) and room.get("slug") and room.get("is_member", True):
                    return str(room["slug"])
        return None

    async def _fetch_pages(self) -> list[Page]:
        paths: list[str] = []
        for path in self.options.page_paths:
            if "{room}" in path:
                slug = await self._room_slug()
                if slug is None:
                    logger.debug("skipping page %s: no room to fill in (give --room)", path)
                    continue
                path = path.replace("{room}", slug)
            paths.append(path)
        # Concurrently, so the pages cost one timeout, not one each; the form login happens once (a lock).
        return list(await asyncio.gather(*(self._fetch_page(self.frontend_url(p)) for p in paths)))

    async def _fetch_page(self, url: str) -> Page:
        try:
            response = await self.browser.get(url)
            if is_login_redirect(response, self.options.login_path) and await self._form_login():
                response = await self.browser.get(url)
            hops = 0
            while response.is_redirect and hops < 5:
                hops += 1
                response = await self.browser.get(str(response.url.join(response.headers["location"])))
        except httpx.HTTPError as exc:
            return Page(url, note=f"GET {url} failed ({describe_error(exc)})")
        final = str(response.url)
        if response.status_code != 200 or "html" not in response.headers.get("content-type", ""):
            page = Page(url, status=response.status_code, final_url=final)
            page.content_type = response.headers.get("content-type", "")
            page.note = f"GET {url} answered {response.status_code} {_content_kind(response)}"
            return page
        page = parse_page(response.text, final)
        page.url, page.status, page.final_url = url, response.status_code, final
        page.content_type = response.headers.get("content-type", "")
        page.csp_header = response.headers.get("content-security-policy", "")
        if final != url:
            page.note = f"{url} led to {final}"
        return page

    async def _form_login(self) -> bool:
        """Log in through the frontend's login form (session cookie), once per run, when credentials allow."""
        o = self.options
        if not (o.username and o.password):
            return False
        async with self._login_lock:
            if self.logged_in is not None:
                return self.logged_in
            url = self.frontend_url(o.login_path)
            self.logged_in = False
            # A client of its own: the pages fetched meanwhile (the login page among them) set CSRF cookies of
            # their own in the shared jar, and a form token sent with another request's cookie is refused.
            async with http_client(timeout=o.timeout, insecure=o.insecure, cookies=True) as form_client:
                try:
                    form = await form_client.get(url)
                    match = _CSRF_INPUT.search(form.text)
                    data = {"username": o.username, "password": o.password}
                    if match:
                        data["csrfmiddlewaretoken"] = match.group(1)
                    response = await form_client.post(url, data=data, headers={"Referer": url, "Origin": self.frontend})
                except httpx.HTTPError as exc:
                    logger.info("form login at %s failed: %s", url, describe_error(exc))
                    return False
                self.logged_in = response.is_redirect and not is_login_redirect(response, o.login_path)
                if self.logged_in:
                    self.browser.cookies.update(form_client.cookies)  # the session, for every page from now on
                else:
                    logger.info("form login at %s was refused (HTTP %d)", url, response.status_code)
            return self.logged_in

    # --- scripts and stylesheets ----------------------------------------------------------------------------

    def fetch(self, url: str) -> Awaitable[Fetched]:
        return self.once(f"fetch:{url}", lambda: self._fetch(url))

    async def _fetch(self, url: str) -> Fetched:
        try:
            response = await self.browser.get(url)
            hops = 0
            while response.is_redirect and hops < 5:
                hops += 1
                response = await self.browser.get(str(response.url.join(response.headers["location"])))
        except httpx.HTTPError as exc:
            return Fetched(url, error=describe_error(exc))
        return Fetched(
            url,
            status=response.status_code,
            content_type=response.headers.get("content-type", ""),
            text=response.text if response.status_code == 200 else "",
            location=str(response.url) if str(response.url) != url else "",
        )


def _content_kind(response: httpx.Response) -> str:
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    if response.is_redirect:
        return f"(redirect to {response.headers.get('location', '?')})"
    return f"({kind})" if kind else ""
