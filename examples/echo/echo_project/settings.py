"""Settings of the echo example: the smallest Django project that serves STOMP with the installed engine."""

SECRET_KEY = "echo-example-only-not-a-secret-0123456789abcdef"  # an example; never deployed
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "channels",
    "stompengine",  # checks the STOMP_* settings, imports echo/stomp_destinations.py at start-up
    "echo",
]
ROOT_URLCONF = "echo_project.urls"
ASGI_APPLICATION = "echo_project.asgi.application"
DATABASES: dict[str, dict[str, str]] = {}  # nothing is stored
USE_TZ = True

# The engine's settings (all optional; defaults in stompengine/conf.py).
STOMP_SERVER_NAME = "echo-example/1.0"
STOMP_AUTHENTICATOR = "echo.auth.EchoAuthenticator"
ECHO_TOKEN = "echo-token"  # the one token the example's authenticator accepts besides anonymous
