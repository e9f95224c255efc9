"""Settings: the only module that reads the environment (12-factor, safe defaults for local use).

Every variable is listed in README.md. Values that cannot work raise ImproperlyConfigured here, so
``manage.py`` and daphne refuse to start; values that are merely risky are ``check --deploy`` warnings
(see ``chatproject/checks.py``).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from chatproject.origins import InvalidOriginPattern, OriginMatcher, normalize_origin
from stompengine.conf import StompSettings

BASE_DIR = Path(__file__).resolve().parent.parent
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me-in-production-0123456789"


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use 1/0, true/false, yes/no or on/off")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below its minimum of {minimum}")
    return value


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below its minimum of {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_given(parsers: dict[str, Callable[..., Any]]) -> dict[str, Any]:
    """The settings among ``parsers`` whose environment variable is given, each parsed (bad values refused).

    For settings whose default lives in the package that reads them (the STOMP engine's stompengine.conf),
    so the default is written once: a variable left unset leaves the setting undefined here.
    """
    given = {}
    for name, parse in parsers.items():
        raw = os.environ.get(name)
        if raw is not None and raw.strip() != "":
            given[name] = parse(name, None)  # env_int & co. read the variable themselves; no default is used
    return given


def env_origin(name: str, default: str) -> str:
    raw = env_str(name, default)
    origin = normalize_origin(raw)
    if origin is None:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not an origin: use scheme://host[:port] with no path, e.g. https://api.example.com"
        )
    return origin


# --- Core -----------------------------------------------------------------------------------------
DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY", DEV_SECRET_KEY)
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured(
        "DEBUG=0 with the built-in development SECRET_KEY: set SECRET_KEY to a long random value "
        "(python -c 'import secrets; print(secrets.token_urlsafe(50))')"
    )
if len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("SECRET_KEY is shorter than 32 characters: JWTs signed with it are weak")

SITE_ORIGIN = env_origin("SITE_ORIGIN", "http://localhost:8000")
API_ORIGIN = env_origin("API_ORIGIN", SITE_ORIGIN)
# In development the site answers on both loopback names (runserver prints 127.0.0.1, the default origin
# says localhost): a page opened on either may call the API. Production names its origins.
_LOOPBACK = re.compile(r"^(https?://)(localhost|127\.0\.0\.1)(?=:|$)")
_loopback_twin = _LOOPBACK.sub(lambda m: m[1] + ("127.0.0.1" if m[2] == "localhost" else "localhost"), SITE_ORIGIN)
_default_frontends = [SITE_ORIGIN, _loopback_twin] if DEBUG and _loopback_twin != SITE_ORIGIN else [SITE_ORIGIN]
try:
    FRONTEND_ORIGINS = env_list("FRONTEND_ORIGINS", _default_frontends)
    ORIGIN_MATCHER = OriginMatcher.from_patterns(FRONTEND_ORIGINS)
except InvalidOriginPattern as exc:
    raise ImproperlyConfigured(f"FRONTEND_ORIGINS: {exc}") from None

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "daphne",  # first, so runserver serves ASGI (WebSocket and streaming) in development
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "stompengine",  # the STOMP engine: checks its settings, imports every app's stomp_destinations at start-up
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "csp",
    # Social login (django-allauth): the account app for its login flow, the social accounts, and the
    # generic OpenID Connect provider; named providers are added below when configured.
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "chatproject",
    "accounts",
    "chat",
    "notifications",
    "search",
    "attachments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.SocialLoginErrorMiddleware",
    "accounts.middleware.HandoverNoStoreMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "chatproject.urls"
ASGI_APPLICATION = "chatproject.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "chatproject.context_processors.frontend",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
try:
    _default_db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
if _default_db["ENGINE"] == "django.db.backends.sqlite3":
    # Several daphne processes share one SQLite file: WAL lets readers run beside the writer,
    # IMMEDIATE takes the write lock at BEGIN (no lock upgrade deadlock), and the busy timeout
    # makes a second writer wait instead of failing with "database is locked".
    _default_db["OPTIONS"] = {
        "timeout": env_float("SQLITE_BUSY_TIMEOUT", 20.0),
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file (not memory) so that the daphne processes of live tests share it; one per test run (pid), so
    # that concurrent runs in one checkout never write to the same file.
    _default_db["TEST"] = {"NAME": str(BASE_DIR / "var" / f"test-db-{os.getpid()}.sqlite3")}
if _default_db["ENGINE"] == "django.db.backends.postgresql" and env_bool("DB_POOL", True):
    # psycopg's pool, one per process: a checkout costs no TCP and password handshake, and a request that finds
    # every connection busy for DB_POOL_TIMEOUT seconds fails (PoolTimeout, a 503 on the API) instead of waiting
    # without end. The pool keeps the connections, so Django's own persistence (CONN_MAX_AGE) must stay 0.
    if _default_db["CONN_MAX_AGE"]:
        raise ImproperlyConfigured(
            f"DB_CONN_MAX_AGE={_default_db['CONN_MAX_AGE']} with DB_POOL on: the pool already keeps connections; "
            "set DB_CONN_MAX_AGE=0, or DB_POOL=0 to use persistent connections without a pool"
        )
    _pool_min = env_int("DB_POOL_MIN_SIZE", 2, minimum=0)
    _pool_max = env_int("DB_POOL_MAX_SIZE", 10, minimum=1)
    if _pool_max < _pool_min:
        raise ImproperlyConfigured(f"DB_POOL_MAX_SIZE={_pool_max} is below DB_POOL_MIN_SIZE={_pool_min}")
    _default_db.setdefault("OPTIONS", {})["pool"] = {
        "min_size": _pool_min,
        "max_size": _pool_max,
        "timeout": env_float("DB_POOL_TIMEOUT", 10.0, minimum=0.1),
        "name": "chat",
    }
DATABASES = {"default": _default_db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer ------------------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
# REDIS_URL names one node of a Redis Cluster (any node: clients discover the others): the bus uses sharded
# pub/sub, presence keeps its keys in one hash slot, the cache routes each key to its shard.
REDIS_CLUSTER = env_bool("REDIS_CLUSTER", False)
STOMP_REDIS_CLUSTER = REDIS_CLUSTER  # the engine's name for it (stompengine.conf)
if REDIS_CLUSTER and not REDIS_URL:
    raise ImproperlyConfigured("REDIS_CLUSTER=1 needs REDIS_URL naming a node of the cluster (redis://host:port)")
# One bus (docs/bus.md): the channel layer rides the STOMP broker, in memory in one process and,
# with REDIS_URL, over the broker's own Redis connections (one subscriber + one command connection per
# process; on a cluster a subscriber per shard), so notifications, operations and chat share one
# cross-process mechanism.
CHANNEL_LAYERS = {"default": {"BACKEND": "stompengine.layers.BrokerChannelLayer", "CONFIG": {"capacity": 1000}}}

# Throttle counters (and anything else cached) must be shared by every process once there are several.
if REDIS_URL and REDIS_CLUSTER:
    CACHES = {"default": {"BACKEND": "chatproject.cluster_cache.RedisClusterCache", "LOCATION": REDIS_URL}}
elif REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth -----------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env_int("JWT_ACCESS_LIFETIME", 15 * 60, minimum=10)),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=env_int("JWT_REFRESH_LIFETIME", 7 * 24 * 3600, minimum=60)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": env_str("JWT_SIGNING_KEY", SECRET_KEY),
    "LEEWAY": env_int("JWT_LEEWAY", 0),
    "AUTH_HEADER_TYPES": ("Bearer",),
}
# One-time codes: the form-login hand-over to JWTs and the SSE stream tickets.
HANDOVER_CODE_TTL = env_int("HANDOVER_CODE_TTL", 60, minimum=5)
SSE_TICKET_TTL = env_int("SSE_TICKET_TTL", 60, minimum=5)

AUTH_THROTTLE_RATE = env_str("AUTH_THROTTLE_RATE", "20/min")
# The client address behind reverse proxies: each proxy appends the address it saw to X-Forwarded-For, so
# with N trusted proxies the client is the N-th entry from the right; anything further left was written by
# the client itself. 0 (no proxy): the socket's address. The deploy recipe (nginx in front) uses 1.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
# Password back-off per account AND client address (so nobody can lock a victim out from elsewhere): after
# AUTH_LOCKOUT_FREE_FAILURES failures the next try waits AUTH_LOCKOUT_BASE_SECONDS, doubling with each
# further failure up to AUTH_LOCKOUT_MAX_SECONDS; a success clears it, and failures are forgotten after
# 4 x AUTH_LOCKOUT_MAX_SECONDS without one.
AUTH_LOCKOUT_FREE_FAILURES = env_int("AUTH_LOCKOUT_FREE_FAILURES", 5, minimum=1)
AUTH_LOCKOUT_BASE_SECONDS = env_int("AUTH_LOCKOUT_BASE_SECONDS", 2, minimum=1)
AUTH_LOCKOUT_MAX_SECONDS = env_int("AUTH_LOCKOUT_MAX_SECONDS", 900, minimum=1)

# --- Social login (django-allauth) ------------------------------------------------------------------------
# A provider is offered on the login page when its client id is set; with none, the page shows only the
# form. Whatever the path, Django's login() fires user_logged_in and the accounts app stores the one-time
# JWT hand-over code (accounts/views.py), so social and form logins end with the same JWT pair.
# Callback URLs to register at a provider: SITE_ORIGIN + /accounts/<provider>/login/callback/, and for
# OpenID Connect SITE_ORIGIN + /accounts/oidc/<SOCIAL_OIDC_ID>/login/callback/.
_SOCIAL_NAMED = {
    # env prefix: (allauth provider id, origin of its authorization page, is the secret required)
    "GOOGLE": ("google", "https://accounts.google.com", True),
    "GITHUB": ("github", "https://github.com", True),
    "KAKAO": ("kakao", "https://kauth.kakao.com", False),
}
SOCIALACCOUNT_PROVIDERS: dict[str, dict] = {}
SOCIAL_LOGIN_ORIGINS: list[str] = []  # where the "Sign in with …" forms redirect to (CSP form-action)
for _prefix, (_provider, _origin, _secret_required) in _SOCIAL_NAMED.items():
    _client_id = env_str(f"SOCIAL_{_prefix}_CLIENT_ID", "")
    if not _client_id:
        continue
    _secret = env_str(f"SOCIAL_{_prefix}_SECRET", "")
    if _secret_required and not _secret:
        raise ImproperlyConfigured(f"SOCIAL_{_prefix}_CLIENT_ID is set without SOCIAL_{_prefix}_SECRET")
    INSTALLED_APPS.append(f"allauth.socialaccount.providers.{_provider}")
    SOCIALACCOUNT_PROVIDERS[_provider] = {
        "APPS": [{"client_id": _client_id, "secret": _secret, "settings": {}}],
        "OAUTH_PKCE_ENABLED": True,
    }
    SOCIAL_LOGIN_ORIGINS.append(_origin)

SOCIAL_OIDC_CLIENT_ID = env_str("SOCIAL_OIDC_CLIENT_ID", "")
if SOCIAL_OIDC_CLIENT_ID:
    _issuer = env_str("SOCIAL_OIDC_ISSUER", "").rstrip("/")
    _issuer_origin = normalize_origin("/".join(_issuer.split("/")[:3])) if _issuer else None
    if _issuer_origin is None:
        raise ImproperlyConfigured(
            f"SOCIAL_OIDC_ISSUER={_issuer!r} is not an issuer URL: use the provider's issuer, "
            "e.g. https://id.example.com/realms/chat (its /.well-known/openid-configuration is read)"
        )
    if not env_str("SOCIAL_OIDC_SECRET", ""):
        raise ImproperlyConfigured("SOCIAL_OIDC_CLIENT_ID is set without SOCIAL_OIDC_SECRET")
    SOCIAL_OIDC_ID = env_str("SOCIAL_OIDC_ID", "oidc")
    if not SOCIAL_OIDC_ID.replace("-", "").replace("_", "").isalnum():
        raise ImproperlyConfigured(f"SOCIAL_OIDC_ID={SOCIAL_OIDC_ID!r}: use letters, digits, - and _ (a URL part)")
    SOCIALACCOUNT_PROVIDERS["openid_connect"] = {
        "APPS": [
            {
                "provider_id": SOCIAL_OIDC_ID,
                "name": env_str("SOCIAL_OIDC_NAME", "OpenID Connect"),
                "client_id": SOCIAL_OIDC_CLIENT_ID,
                "secret": env_str("SOCIAL_OIDC_SECRET", ""),
                "settings": {"server_url": _issuer},
            }
        ],
        "OAUTH_PKCE_ENABLED": True,
    }
    SOCIAL_LOGIN_ORIGINS.append(_issuer_origin)

SOCIALACCOUNT_ADAPTER = "accounts.social.SocialAccountAdapter"
ACCOUNT_ADAPTER = "accounts.social.AccountAdapter"
SOCIALACCOUNT_AUTO_SIGNUP = True
# Link to an existing user only through an e-mail the provider says it verified (accounts/social.py
# narrows this to exactly one active account with that address).
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"  # this server sends no mail; trust is the provider's word
ACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_LOGIN_ON_GET = False  # the login page POSTs (with CSRF) to start a social login
SOCIALACCOUNT_STORE_TOKENS = False  # the provider's tokens are not needed after sign-in
SOCIALACCOUNT_REQUESTS_TIMEOUT = env_int("SOCIAL_REQUESTS_TIMEOUT", 5, minimum=1)
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if SITE_ORIGIN.startswith("https://") else "http"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser", "rest_framework.parsers.FormParser"],
    "EXCEPTION_HANDLER": "chatproject.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,  # DRF's own throttles read X-Forwarded-For the same way
}

# --- Search (search/) ------------------------------------------------------------------------------------
# PostgreSQL's text search configuration (stemming, stop words); after changing it run `manage.py search_rebuild`.
SEARCH_PG_CONFIG = env_str("SEARCH_PG_CONFIG", "english")
# Off only for measuring what indexing costs the writer (bench/search.py) or for a bulk load followed by
# `manage.py search_rebuild`: with it off, new messages are not found.
SEARCH_INDEX_ON_WRITE = env_bool("SEARCH_INDEX_ON_WRITE", True)
SEARCH_QUERY_MAX_LENGTH = env_int("SEARCH_QUERY_MAX_LENGTH", 200, minimum=1)
SEARCH_PAGE_SIZE = env_int("SEARCH_PAGE_SIZE", 20, minimum=1)
SEARCH_PAGE_MAX = env_int("SEARCH_PAGE_MAX", 50, minimum=1)

# --- Chat limits ----------------------------------------------------------------------------------------
CHAT_MESSAGE_MAX_LENGTH = env_int("CHAT_MESSAGE_MAX_LENGTH", 4000, minimum=1)
CHAT_HISTORY_PAGE_MAX = env_int("CHAT_HISTORY_PAGE_MAX", 200, minimum=1)
# The most messages a SUBSCRIBE with since-id replays; beyond, the client completes from REST history.
CHAT_RESUME_MAX = env_int("CHAT_RESUME_MAX", 500, minimum=1)
# The chat writer (chat/writer): SENDs arriving within the window (ms) are stored in one transaction, at
# most BATCH_MAX messages per batch; past QUEUE_LIMIT waiting messages a SEND is refused (server-busy).
CHAT_WRITE_WINDOW_MS = env_float("CHAT_WRITE_WINDOW_MS", 3.0)
CHAT_WRITE_BATCH_MAX = env_int("CHAT_WRITE_BATCH_MAX", 500, minimum=1)
CHAT_WRITE_QUEUE_LIMIT = env_int("CHAT_WRITE_QUEUE_LIMIT", 20_000, minimum=1)
# The writer's batches stored in a process of its own (chat/writer/process.py) instead of a thread sharing the
# server's GIL with the event loop.
CHAT_WRITER_PROCESS = env_bool("CHAT_WRITER_PROCESS", False)

# --- STOMP engine (stompengine/) ------------------------------------------------------------------------
# stompengine.conf holds every engine setting's default and minimum (README "Configuration" lists them):
# this module sets one only when its environment variable is given, so no default is written twice.
# Abuse limits (stompengine/realtime/limits.py) and output backpressure: README "Security".
ENGINE_ENV_SETTINGS: dict[str, Callable[..., Any]] = {
    **dict.fromkeys(
        (
            "STOMP_MAX_FRAME_SIZE", "STOMP_MAX_HEADERS", "STOMP_MAX_HEADER_LENGTH", "STOMP_MAX_SUBSCRIPTIONS",
            "STOMP_SEND_QUEUE_LIMIT", "STOMP_SEND_PIPELINE", "STOMP_HEARTBEAT_SEND_MS", "STOMP_HEARTBEAT_RECEIVE_MS",
            "STOMP_MAX_TRANSACTIONS", "STOMP_MAX_TRANSACTION_FRAMES", "STOMP_MAX_TRANSACTION_BYTES",
            "STOMP_MAX_PENDING_ACKS", "STOMP_MAX_BODY_SIZE", "STOMP_MAX_CONNECTIONS_PER_USER", "STOMP_SEND_BURST",
            "STOMP_SEND_ABUSE_LIMIT", "STOMP_MAX_UNSENT_BYTES", "STOMP_MAX_REPLAYS", "STOMP_USER_SEND_BURST",
            "STOMP_COALESCE_BYTES", "STOMP_CONNECT_BURST",
        ),
        env_int,
    ),
    **dict.fromkeys(
        (
            "STOMP_HEARTBEAT_GRACE", "STOMP_CONNECT_TIMEOUT", "STOMP_SEND_RATE", "STOMP_REPLAY_WAIT",
            "STOMP_SUBSCRIBE_COST", "STOMP_USER_SEND_RATE", "STOMP_USER_BUDGET_SYNC", "STOMP_SHUTDOWN_GRACE",
            "STOMP_CONNECT_RATE", "STOMP_REDIS_PUBLISH_LINGER_MS",
        ),
        env_float,
    ),
    "STOMP_REDIS_PREFIX": env_str,
}  # fmt: skip
globals().update(env_given(ENGINE_ENV_SETTINGS))
STOMP_SERVER_NAME = "chatproject/1.0"
# Checks the credentials of every CONNECT (and of /app/auth.refresh): a JWT access token (accounts).
STOMP_AUTHENTICATOR = "accounts.stomp_auth.JWTAuthenticator"
# The WebSocket message limit follows the frame limit (one setting): twice the frame size leaves room for
# SockJS's JSON escaping and a few frames per message, so an oversized frame still gets a STOMP ERROR;
# past this limit the socket is closed with 1009. Applied to daphne at startup (sockjs/daphne.py).
WEBSOCKET_MAX_MESSAGE_SIZE = StompSettings(
    max_frame_size=globals().get("STOMP_MAX_FRAME_SIZE", StompSettings.max_frame_size)
).websocket_max_message_size
# Which destinations clients may SEND to / SUBSCRIBE to; the longest matching prefix decides, anything
# unmatched is refused. Room topics are subscribe-only: chat messages go through /app/rooms.<slug>.
STOMP_DESTINATION_RULES = [
    ("/topic/", "send subscribe"),
    ("/topic/rooms.", "subscribe"),
    ("/app/", "send"),
    ("/user/queue/", "subscribe"),
]
# Modules imported at start-up (the stompengine app's ready()) to register /app handlers and subscription
# guards; besides these, every installed app's ``stomp_destinations`` module is imported.
STOMP_HANDLER_MODULES: list[str] = []

# --- SockJS (sockjs/) -------------------------------------------------------------------------------------
SOCKJS_TEST_SERVICES = env_bool("SOCKJS_TEST_SERVICES", False)
SOCKJS_HEARTBEAT_INTERVAL = env_float("SOCKJS_HEARTBEAT_INTERVAL", 25.0, minimum=0.05)
SOCKJS_DISCONNECT_DELAY = env_float("SOCKJS_DISCONNECT_DELAY", 5.0, minimum=0.05)
SOCKJS_RESPONSE_LIMIT = env_int("SOCKJS_RESPONSE_LIMIT", 128 * 1024, minimum=4096)
SOCKJS_COOKIE_NEEDED = env_bool("SOCKJS_COOKIE_NEEDED", False)
SOCKJS_WEBSOCKET_ENABLED = env_bool("SOCKJS_WEBSOCKET_ENABLED", True)
SOCKJS_CLIENT_URL = env_str("SOCKJS_CLIENT_URL", "")  # empty: the locally served sockjs.min.js
SOCKJS_SESSION_QUEUE_LIMIT = env_int("SOCKJS_SESSION_QUEUE_LIMIT", 10_000, minimum=16)
# Issue 16 (items 4, 11): a session's later requests must come from the opener's address; a request body
# must arrive within SOCKJS_BODY_TIMEOUT seconds (servers that stream bodies, i.e. uvicorn) and, under
# daphne, a whole request (head and body) within HTTP_RECEIVE_TIMEOUT seconds of its first line.
SOCKJS_BIND_PEER = env_bool("SOCKJS_BIND_PEER", True)
SOCKJS_BODY_TIMEOUT = env_float("SOCKJS_BODY_TIMEOUT", 5.0, minimum=0.1)
HTTP_RECEIVE_TIMEOUT = env_float("HTTP_RECEIVE_TIMEOUT", 20.0, minimum=1.0)

# --- Notifications (notifications/) ------------------------------------------------------------------------
SSE_HEARTBEAT_INTERVAL = env_float("SSE_HEARTBEAT_INTERVAL", 15.0, minimum=0.05)
SSE_RETRY_MS = env_int("SSE_RETRY_MS", 3000, minimum=100)
# Replay after Last-Event-ID reads this many stored notifications per query; live events that arrive
# meanwhile are held (up to the limit, beyond which the replay simply runs another pass).
SSE_REPLAY_BATCH = env_int("SSE_REPLAY_BATCH", 500, minimum=1)
SSE_REPLAY_BUFFER_LIMIT = env_int("SSE_REPLAY_BUFFER_LIMIT", 1000, minimum=1)
# Open streams per user in each worker process (beyond it a JSON 429); a user may also hold at most this
# many unused stream tickets at once.
SSE_MAX_STREAMS_PER_USER = env_int("SSE_MAX_STREAMS_PER_USER", 20, minimum=1)
# Presence (chat/presence.py): a leave is announced this late, and a join of the same user in the same
# room within it cancels it, so quick unsubscribe/subscribe pairs send nothing (0: no debounce). With Redis,
# each worker's presence counts are leased for CHAT_PRESENCE_LEASE seconds and renewed while it lives, so
# the counts of a worker that died expire after at most that long.
CHAT_PRESENCE_DEBOUNCE_MS = env_int("CHAT_PRESENCE_DEBOUNCE_MS", 1000)
CHAT_PRESENCE_LEASE = env_float("CHAT_PRESENCE_LEASE", 30.0, minimum=1.0)
# Notifications name their channel layer alias (notifications/publishing.py): the same bus layer. Pub/sub is
# at-most-once; Last-Event-ID replay from the database covers a stream that lost its connection.
NOTIFICATIONS_CHANNEL_LAYER = "notifications"
CHANNEL_LAYERS[NOTIFICATIONS_CHANNEL_LAYER] = CHANNEL_LAYERS["default"]

# --- CORS, CSRF, TLS behind a proxy ---------------------------------------------------------------------
# django-cors-headers asks ORIGIN_MATCHER through its check_request_enabled signal (chatproject/apps.py),
# so the same patterns decide CORS here and the origin checks of the WebSocket, SockJS and SSE consumers.
CORS_ALLOWED_ORIGINS: list[str] = []
CORS_ALLOW_CREDENTIALS = True
CORS_URLS_REGEX = r"^/(api|ws|sockjs-test)/.*$"
CORS_ALLOW_HEADERS = ["accept", "authorization", "content-type", "last-event-id", "x-csrftoken", "x-requested-with"]
CORS_PREFLIGHT_MAX_AGE = 3600
CSRF_TRUSTED_ORIGINS = [
    p.replace(":*", "").replace("[", "").replace("]", "") for p in FRONTEND_ORIGINS if p != "*" and "," not in p
]

if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = env_bool("USE_X_FORWARDED_HOST", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", SITE_ORIGIN.startswith("https://"))
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", SITE_ORIGIN.startswith("https://"))
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Content Security Policy (django-csp 4) -------------------------------------------------------------
_api_ws = API_ORIGIN.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
# An https page upgrades http:// calls (upgrade-insecure-requests), and Chromium does not let an
# http://host:port source match the upgraded https://host:port: allow the upgraded forms too.
_api_upgraded = [API_ORIGIN.replace("http://", "https://", 1), _api_ws.replace("ws://", "wss://", 1)]
_api_connect = list(dict.fromkeys([API_ORIGIN, _api_ws, *_api_upgraded]))
CONTENT_SECURITY_POLICY: dict[str, dict[str, list[str] | bool]] = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'", *_api_connect],
        "frame-src": ["'self'", *dict.fromkeys([API_ORIGIN, _api_upgraded[0]])],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'", *SOCIAL_LOGIN_ORIGINS],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    }
}
if SITE_ORIGIN.startswith("https://"):
    CONTENT_SECURITY_POLICY["DIRECTIVES"]["upgrade-insecure-requests"] = True

# --- Static files ---------------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "var" / "staticfiles")))
# Production (DEBUG=0): collectstatic writes content-hashed names and a manifest, so the proxy serves
# STATIC_ROOT with a year-long cache (deploy/nginx). With DEBUG the plain storage, so `make run` and
# `make test` need no collectstatic. STATIC_MANIFEST=0/1 overrides.
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Attachments (attachments/, README "Attachments") ----------------------------------------------
# Where files live: the local file system (development, `make run`) or any S3-compatible service.
ATTACHMENTS_STORAGE = env_str("ATTACHMENTS_STORAGE", "filesystem").lower()
ATTACHMENTS_ROOT = Path(env_str("ATTACHMENTS_ROOT", str(BASE_DIR / "var" / "attachments")))
ATTACHMENTS_S3_BUCKET = env_str("ATTACHMENTS_S3_BUCKET", "")
ATTACHMENTS_S3_ENDPOINT_URL = env_str("ATTACHMENTS_S3_ENDPOINT_URL", "")  # empty: AWS itself
ATTACHMENTS_S3_REGION = env_str("ATTACHMENTS_S3_REGION", "us-east-1")
ATTACHMENTS_S3_ACCESS_KEY_ID = env_str("ATTACHMENTS_S3_ACCESS_KEY_ID", "")
ATTACHMENTS_S3_SECRET_ACCESS_KEY = env_str("ATTACHMENTS_S3_SECRET_ACCESS_KEY", "")
ATTACHMENTS_S3_ADDRESSING_STYLE = env_str("ATTACHMENTS_S3_ADDRESSING_STYLE", "path")  # path works everywhere
# A CA bundle to verify the endpoint's certificate with (a private CA); empty: the system's.
ATTACHMENTS_S3_CA_BUNDLE = env_str("ATTACHMENTS_S3_CA_BUNDLE", "")
if ATTACHMENTS_STORAGE == "filesystem":
    _attachments_storage: dict = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # No base_url: these files are never served from a public path, only by the signed view.
        "OPTIONS": {"location": str(ATTACHMENTS_ROOT), "base_url": "/-/not-public/"},
    }
elif ATTACHMENTS_STORAGE == "s3":
    if not ATTACHMENTS_S3_BUCKET:
        raise ImproperlyConfigured("ATTACHMENTS_STORAGE=s3 needs ATTACHMENTS_S3_BUCKET")
    from boto3.s3.transfer import TransferConfig

    _attachments_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": ATTACHMENTS_S3_BUCKET,
            "endpoint_url": ATTACHMENTS_S3_ENDPOINT_URL or None,
            "region_name": ATTACHMENTS_S3_REGION,
            "access_key": ATTACHMENTS_S3_ACCESS_KEY_ID or None,
            "secret_key": ATTACHMENTS_S3_SECRET_ACCESS_KEY or None,
            "addressing_style": ATTACHMENTS_S3_ADDRESSING_STYLE,
            "signature_version": "s3v4",
            "default_acl": None,  # private objects: only presigned URLs read them
            "querystring_auth": True,
            "file_overwrite": False,
            "verify": ATTACHMENTS_S3_CA_BUNDLE or None,
            # A large file goes up in 8 MB parts, two at a time: bounded memory per upload.
            "transfer_config": TransferConfig(multipart_chunksize=8 * 1024 * 1024, max_concurrency=2),
        },
    }
else:
    raise ImproperlyConfigured(f"ATTACHMENTS_STORAGE={ATTACHMENTS_STORAGE!r}: use filesystem or s3")
STORAGES["attachments"] = _attachments_storage
# Limits, with clear 4xx errors (attachments/limits.py). Sizes in bytes.
ATTACHMENTS_MAX_FILE_BYTES = env_int("ATTACHMENTS_MAX_FILE_BYTES", 50 * 1024 * 1024, minimum=1)
ATTACHMENTS_MAX_MESSAGE_BYTES = env_int("ATTACHMENTS_MAX_MESSAGE_BYTES", 100 * 1024 * 1024, minimum=1)
ATTACHMENTS_MAX_PER_MESSAGE = env_int("ATTACHMENTS_MAX_PER_MESSAGE", 10, minimum=1)
ATTACHMENTS_USER_QUOTA_BYTES = env_int("ATTACHMENTS_USER_QUOTA_BYTES", 1024 * 1024 * 1024, minimum=1)
# Types as the content says (magic bytes), not as the name says. SVG and HTML are never served inline.
ATTACHMENTS_ALLOWED_TYPES = env_list(
    "ATTACHMENTS_ALLOWED_TYPES",
    ["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain", "application/zip"],
)
ATTACHMENTS_URL_TTL = env_int("ATTACHMENTS_URL_TTL", 300, minimum=1)  # seconds a signed URL works
ATTACHMENTS_UNATTACHED_TTL = env_int("ATTACHMENTS_UNATTACHED_TTL", 24 * 3600, minimum=60)
# Pillow's decompression-bomb limit for uploaded images (pixels; twice this is refused outright by Pillow).
ATTACHMENTS_MAX_IMAGE_PIXELS = env_int("ATTACHMENTS_MAX_IMAGE_PIXELS", 40_000_000, minimum=1)
ATTACHMENTS_THUMBNAIL_PX = env_int("ATTACHMENTS_THUMBNAIL_PX", 320, minimum=16)
# Uploads above this many bytes go to a temporary file, never whole in memory (Django's default: 2.5 MB).
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 256 * 1024, minimum=1024)
FILE_UPLOAD_TEMP_DIR = env_str("FILE_UPLOAD_TEMP_DIR", "") or None
# Images are shown from the storage's origin (the S3 endpoint) or the API's (the signed view).
_attachment_origins = [API_ORIGIN]
if ATTACHMENTS_STORAGE == "s3" and ATTACHMENTS_S3_ENDPOINT_URL:
    _s3_origin = normalize_origin(ATTACHMENTS_S3_ENDPOINT_URL)
    if _s3_origin is None:
        raise ImproperlyConfigured(f"ATTACHMENTS_S3_ENDPOINT_URL={ATTACHMENTS_S3_ENDPOINT_URL!r} is not an origin")
    _attachment_origins.append(_s3_origin)
_img_src = CONTENT_SECURITY_POLICY["DIRECTIVES"]["img-src"]
assert isinstance(_img_src, list)  # a list above; this tells the type checker
CONTENT_SECURITY_POLICY["DIRECTIVES"]["img-src"] = list(dict.fromkeys([*_img_src, *_attachment_origins]))

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Operations: metrics and readiness (operations/, README "Operating it") ---------------------------
METRICS_ENABLED = env_bool("METRICS_ENABLED", True)
# Who may read /metrics (CIDRs): loopback by default; the nginx recipe never proxies /metrics.
try:
    METRICS_ALLOWED_NETWORKS = [
        ipaddress.ip_network(n, strict=False) for n in env_list("METRICS_ALLOWED_NETWORKS", ["127.0.0.1/32", "::1/128"])
    ]
except ValueError as exc:
    raise ImproperlyConfigured(f"METRICS_ALLOWED_NETWORKS: {exc}") from None
# Several workers: a directory they share (emptied before they start); prometheus-client reads it itself.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", "")
if PROMETHEUS_MULTIPROC_DIR and not Path(PROMETHEUS_MULTIPROC_DIR).is_dir():
    raise ImproperlyConfigured(f"PROMETHEUS_MULTIPROC_DIR={PROMETHEUS_MULTIPROC_DIR} is not a directory")
METRICS_SAMPLE_INTERVAL = env_float("METRICS_SAMPLE_INTERVAL", 5.0)
READINESS_TIMEOUT = env_float("READINESS_TIMEOUT", 1.0, minimum=0.05)
# Tracing (operations/tracing.py): off unless the standard OpenTelemetry variables ask for it. The SDK
# reads the rest itself (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, ...).
_otlp_endpoint = env_str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "") or env_str("OTEL_EXPORTER_OTLP_ENDPOINT", "")
TRACING_EXPORTER = env_str("OTEL_TRACES_EXPORTER", "otlp" if _otlp_endpoint else "none").lower()
if TRACING_EXPORTER not in ("otlp", "console", "none"):
    raise ImproperlyConfigured(f"OTEL_TRACES_EXPORTER={TRACING_EXPORTER!r}: this server supports otlp, console or none")
TRACING_ENABLED = TRACING_EXPORTER != "none" and not env_bool("OTEL_SDK_DISABLED", False)
# "json": one JSON object per log line, with connection_id, user_id and destination on real-time lines.
LOG_FORMAT = env_str("LOG_FORMAT", "plain").lower()
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use plain or json")

# --- The server process: cyclic garbage collection (chatproject/gctune.py) ---------------------------------
# Start-up leaves ~150,000 long-lived objects (Django, the apps, their modules); every full (generation 2)
# collection walked them all: 50-420 ms with the event loop (or the chat writer holding the GIL) stopped,
# the "isolated stalls" of the paced chat benchmark. Frozen once after start-up, a full collection walks
# only what the connections made since (a few ms). GC_THRESHOLD: "gen0,gen1,gen2" (gc.set_threshold),
# empty keeps the interpreter's (700,10,10).
GC_FREEZE = env_bool("GC_FREEZE", True)


def env_gc_threshold(name: str) -> tuple[int, int, int] | None:
    raw = env_str(name, "")
    if not raw:
        return None
    parts = [part.strip() for part in raw.split(",")]
    if len(parts) != 3 or not all(part.isdigit() for part in parts) or int(parts[0]) < 1:
        raise ImproperlyConfigured(f"{name}={raw!r}: three whole numbers gen0,gen1,gen2 with gen0 >= 1, e.g. 700,10,10")
    return int(parts[0]), int(parts[1]), int(parts[2])


GC_THRESHOLD = env_gc_threshold("GC_THRESHOLD")

# --- Logging --------------------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"},
        "json": {"()": "operations.logs.JsonFormatter"},
    },
    # Every line passes RedactSecrets: JWTs, Bearer values and ?ticket=/?code= values are masked.
    "filters": {
        "redact": {"()": "chatproject.logredact.RedactSecrets"},
        "realtime": {"()": "operations.logs.RealtimeContext"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["realtime", "redact"]}
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django.db.backends": {"level": "INFO"},
        "daphne": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},  # one INFO line per request would drown manage.py doctor's report
    },
}
