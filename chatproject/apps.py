"""Project-level app: origin matcher for CORS, system checks, and operations' hooks into the engine's shutdown."""

from django.apps import AppConfig


class ChatProjectConfig(AppConfig):
    name = "chatproject"
    verbose_name = "Chat project"

    def ready(self) -> None:
        from corsheaders.signals import check_request_enabled

        from chatproject import checks  # noqa: F401  (registers the system checks)

        check_request_enabled.connect(_cors_allows_origin, dispatch_uid="chatproject-origin-matcher")
        # The operations package has no app of its own: the STOMP engine's shutdown reaches it from here.
        from stompengine.signals import shut_down, shutting_down

        shutting_down.connect(_mark_draining, dispatch_uid="operations.readiness.draining")
        shut_down.connect(_forget_process, dispatch_uid="operations.readiness.forget")


def _mark_draining(sender, **kwargs) -> None:
    """SIGTERM: /readyz/ answers 503 from now on (the listening socket stays open meanwhile)."""
    from operations import readiness

    readiness.mark_draining()


def _forget_process(sender, **kwargs) -> None:
    """The worker is about to exit: drop its live gauges from the shared metrics directory."""
    from operations import readiness

    readiness.forget_process()


def _cors_allows_origin(sender, request, **kwargs) -> bool:
    """django-cors-headers asks here: the one origin matcher decides for every Django view."""
    from chatproject.origins import origin_matcher

    return origin_matcher().allows(request.headers.get("origin"))
