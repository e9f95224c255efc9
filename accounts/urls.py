"""Account routes: REST under /api/auth/ and /api/me/, HTML pages at /login/, /logout/, /register/, and
social login (django-allauth) under /accounts/."""

from allauth.urls import build_provider_urlpatterns
from django.urls import include, path
from django.views.generic import RedirectView

from accounts import api, views

api_urlpatterns = [
    path("auth/register/", api.RegisterView.as_view(), name="api-register"),
    path("auth/token/", api.TokenView.as_view(), name="token-obtain"),
    path("auth/token/refresh/", api.TokenRefreshThrottledView.as_view(), name="token-refresh"),
    path("auth/token/verify/", api.TokenVerifyThrottledView.as_view(), name="token-verify"),
    path("auth/logout/", api.LogoutView.as_view(), name="api-logout"),
    path("auth/handover/", api.HandoverView.as_view(), name="api-handover"),
    path("me/", api.MeView.as_view(), name="me"),
]

page_urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("login/handover/", views.handover_renew, name="handover-renew"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("register/", views.register, name="register"),
]

# Only allauth's social login: its provider views (/accounts/<provider>/login/ and …/callback/, OpenID Connect
# at /accounts/oidc/<id>/…) and /accounts/3rdparty/. Its account pages are not used: the names its flows
# reverse point to this project's login and register pages, so there is one login page.
social_urlpatterns = [
    path("accounts/login/", RedirectView.as_view(pattern_name="login", query_string=True), name="account_login"),
    path("accounts/signup/", RedirectView.as_view(pattern_name="register"), name="account_signup"),
    path("accounts/3rdparty/", include("allauth.socialaccount.urls")),
    path("accounts/", include(build_provider_urlpatterns())),
]
