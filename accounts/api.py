"""REST endpoints under /api/: registration, JWTs (simplejwt, throttled), logout, hand-over, me."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView, TokenVerifyView

from accounts import lockout, services
from accounts.addresses import client_address
from accounts.models import OneTimeCode
from accounts.responses import NoStoreMixin
from accounts.serializers import CodeSerializer, RefreshSerializer, RegisterSerializer, UserSerializer
from accounts.throttles import AccountLockoutThrottle, AuthRateThrottle, login_username


class RegisterView(NoStoreMixin, APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [AuthRateThrottle]

    def post(self, request: Request) -> Response:
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            user = services.user_register(**serializer.validated_data)
        except ValidationError as exc:
            return Response(
                {"detail": "registration failed; see errors", "errors": exc.message_dict},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(
            {"user": UserSerializer(user).data, **services.token_pair_for_user(user)},
            status=status.HTTP_201_CREATED,
        )


class TokenView(NoStoreMixin, TokenObtainPairView):
    """A JWT pair for a user name and password; failures count towards the account-and-address back-off."""

    throttle_classes = [AuthRateThrottle, AccountLockoutThrottle]

    def post(self, request: Request, *args, **kwargs) -> Response:
        username, address = login_username(request), client_address(request)
        try:
            response = super().post(request, *args, **kwargs)
        except AuthenticationFailed:  # a wrong password, an unknown or an inactive account
            if username:
                lockout.login_failed(username=username, address=address)
            raise
        if username and response.status_code == status.HTTP_200_OK:
            lockout.login_succeeded(username=username, address=address)
        return response


class TokenRefreshThrottledView(NoStoreMixin, TokenRefreshView):
    throttle_classes = [AuthRateThrottle]


class TokenVerifyThrottledView(TokenVerifyView):
    throttle_classes = [AuthRateThrottle]


class LogoutView(APIView):
    """Blacklist the refresh token; the short-lived access token simply runs out."""

    permission_classes = [AllowAny]

    def post(self, request: Request) -> Response:
        serializer = RefreshSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.refresh_token_revoke(refresh=serializer.validated_data["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class HandoverView(NoStoreMixin, APIView):
    """Exchange the one-time code a login page handed to global.js for a JWT pair."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [AuthRateThrottle]

    def post(self, request: Request) -> Response:
        serializer = CodeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            user = services.one_time_code_redeem(
                code=serializer.validated_data["code"], purpose=OneTimeCode.Purpose.HANDOVER
            )
        except services.CodeRejected:
            return Response(
                {"detail": "the hand-over code is unknown, used or expired: log in again"},
                status=status.HTTP_401_UNAUTHORIZED,
            )
        return Response({"user": UserSerializer(user).data, **services.token_pair_for_user(user)})


class MeView(APIView):
    def get(self, request: Request) -> Response:
        return Response(UserSerializer(request.user).data)
