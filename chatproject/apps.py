"""Project-level app: wires the origin matcher into django-cors-headers and registers system checks."""

from django.apps import AppConfig


class ChatProjectConfig(AppConfig):
    name = "chatproject"
    verbose_name = "Chat project"

    def ready(self) -> None:
        from corsheaders.signals import check_request_enabled

        from chatproject import checks  # noqa: F401  (registers the system checks)

        check_request_enabled.connect(_cors_allows_origin, dispatch_uid="chatproject-origin-matcher")


def _cors_allows_origin(sender, request, **kwargs) -> bool:
    """django-cors-headers asks here: the one origin matcher decides for every Django view."""
    from chatproject.origins import origin_matcher

    return origin_matcher().allows(request.headers.get("origin"))
