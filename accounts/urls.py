"""Account routes: REST under /api/auth/ and /api/me/, HTML pages at /login/, /logout/, /register/."""

from django.urls import path

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
