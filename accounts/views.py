"""HTML login, registration and logout. Every login path ends with the same JWT pair in the browser.

A successful login (this form, or later a social login) stores a one-time hand-over code in the
session; the next page carries it in a <meta> tag and global.js exchanges it at the API origin for the
access/refresh pair (``POST /api/auth/handover/``). Tokens never appear in a URL or in the HTML.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.signals import user_logged_in
from django.core.exceptions import ValidationError
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts import lockout, services
from accounts.addresses import client_address
from accounts.models import OneTimeCode
from accounts.responses import HANDOVER_RENDERED, no_store
from accounts.throttles import AuthRateThrottle, login_username

if TYPE_CHECKING:
    pass

HANDOVER_SESSION_KEY = "jwt_handover_code"


@receiver(user_logged_in, dispatch_uid="accounts-jwt-handover")
def _issue_handover_code(sender, request, user, **kwargs) -> None:
    if request is not None and hasattr(request, "session"):
        request.session[HANDOVER_SESSION_KEY] = services.one_time_code_issue(
            user=user, purpose=OneTimeCode.Purpose.HANDOVER, ttl_seconds=settings.HANDOVER_CODE_TTL
        )


def pop_handover_code(request: HttpRequest) -> str | None:
    """The pending hand-over code for this page, removed from the session so it is rendered once."""
    session = getattr(request, "session", None)
    if session is None:
        return None
    code = session.pop(HANDOVER_SESSION_KEY, None)
    if code is not None:
        setattr(request, HANDOVER_RENDERED, True)  # HandoverNoStoreMiddleware marks the response no-store
    return code


@require_POST
def handover_renew(request: HttpRequest) -> HttpResponse:
    """A fresh hand-over code for a signed-in session whose JWTs are gone (storage cleared, refresh expired).

    Same-origin only: it needs the session cookie and the CSRF token, so another site cannot use it.
    """
    if not request.user.is_authenticated:
        return JsonResponse({"detail": "not signed in: log in again"}, status=401)
    code = services.one_time_code_issue(
        user=request.user, purpose=OneTimeCode.Purpose.HANDOVER, ttl_seconds=settings.HANDOVER_CODE_TTL
    )
    return no_store(JsonResponse({"code": code}))


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = False

    def post(self, request, *args, **kwargs):
        if not AuthRateThrottle().allow_request(request, None):
            return self._refuse("Too many login attempts from your address: wait a minute and try again.")
        wait = lockout.login_wait(username=login_username(request), address=client_address(request))
        if wait:
            return self._refuse(
                f"Too many failed logins for this account from your address: try again in {wait} seconds.",
                retry_after=wait,
            )
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        lockout.login_succeeded(username=login_username(self.request), address=client_address(self.request))
        return super().form_valid(form)

    def form_invalid(self, form):
        username = login_username(self.request)
        if username:
            lockout.login_failed(username=username, address=client_address(self.request))
        return super().form_invalid(form)

    def _refuse(self, text: str, *, retry_after: int | None = None) -> HttpResponse:
        form = self.get_form()
        form.add_error(None, text)
        response = self.render_to_response(self.get_context_data(form=form), status=429)
        if retry_after:
            response["Retry-After"] = str(retry_after)
        return response


class LogoutView(auth_views.LogoutView):
    """Ends the session; global.js blacklists the refresh token at the API before it submits this form."""


@require_http_methods(["GET", "POST"])
def register(request: HttpRequest) -> HttpResponse:
    errors: dict[str, list[str]] = {}
    values = {"username": "", "email": ""}
    if request.method == "POST":
        if not AuthRateThrottle().allow_request(request, None):
            errors = {"__all__": ["Too many attempts from your address: wait a minute and try again."]}
            return render(request, "accounts/register.html", {"errors": errors, "values": values}, status=429)
        values = {"username": request.POST.get("username", ""), "email": request.POST.get("email", "")}
        password = request.POST.get("password", "")
        if password != request.POST.get("password2", ""):
            errors = {"password2": ["The two passwords differ."]}
        else:
            try:
                user = services.user_register(username=values["username"], password=password, email=values["email"])
            except ValidationError as exc:
                errors = exc.message_dict
            else:
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                return redirect(settings.LOGIN_REDIRECT_URL)
    return render(
        request, "accounts/register.html", {"errors": errors, "values": values}, status=400 if errors else 200
    )
