"""Settings shared by every environment; everything that differs comes from env vars."""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


SECRET_KEY = os.environ.get("SECRET_KEY", "insecure-dev-key-change-me")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here instead of a CDN
    "django_q",
    "entities.apps.EntitiesConfig",
    "automation.apps.AutomationConfig",
]

MIDDLEWARE = [
    "automation.api.request_metrics.RequestMetricsMiddleware",
    # A caller's traceparent: the runs it starts join its trace (docs/operating.md#tracing).
    "automation.api.request_tracing.TraceContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files from any app server, gunicorn included (docs/operating.md, "Serving").
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A signed-in user's saves name them as the actor (docs/user-guide/timeline.md).
    "entities.actors.ActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "automation.views.operations.paused_banner",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
# SQLite by default so a new user needs nothing but Python. Web server and worker share
# the file, so: WAL journal, a busy timeout, and IMMEDIATE transactions (docs/operating.md: the
# default DEFERRED mode lost task results to "database is locked" in trials).
DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
CONN_MAX_AGE = int(os.environ.get("CONN_MAX_AGE", "600"))
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=CONN_MAX_AGE)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True


def queue_file(name: str) -> str:
    """The task queue's SQLite file next to the database's: `db.sqlite3` -> `db-queue.sqlite3`."""
    path = Path(name)
    return str(path.with_name(f"{path.stem}-queue{path.suffix}"))


# SQLite: django-q2's tables (the ORM broker's queue, task results, schedules) live in a
# file of their own, so queue writes and the engine's writes never wait on one write
# lock (config/queue.py; docs/operating.md "The task queue's database"). `manage.py
# migrate` migrates both. QUEUE_DATABASE_URL names another file. PostgreSQL: one database.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" and \
        DATABASES["default"]["NAME"] not in ("", ":memory:"):
    _queue_url = os.environ.get("QUEUE_DATABASE_URL") or \
        f"sqlite:///{queue_file(DATABASES['default']['NAME'])}"
    DATABASES["queue"] = dj_database_url.parse(_queue_url, conn_max_age=CONN_MAX_AGE)
    DATABASES["queue"]["OPTIONS"] = dict(DATABASES["default"]["OPTIONS"])
    DATABASE_ROUTERS = ["config.queue.QueueRouter"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or BASE_DIR / "var" / "static")

LOGIN_URL = "admin:login"

# --- Queue (django-q2) ----------------------------------------------------------------
# ORM broker by default; REDIS_URL switches every worker to the Redis broker. One cluster
# name and one SECRET_KEY for every worker that shares the queue. `timeout` is always set
# and `retry` stays well above it (a system check enforces this): the ORM broker
# redelivers a task after `retry` seconds, so a step must finish before that.
REDIS_URL = os.environ.get("REDIS_URL", "")
Q_CLUSTER = {
    "name": os.environ.get("Q_CLUSTER_NAME", "entityflow"),
    "workers": int(os.environ.get("Q_WORKERS", "2")),
    "timeout": int(os.environ.get("Q_TIMEOUT", "120")),
    "retry": int(os.environ.get("Q_RETRY", "300")),
    "max_attempts": 3,
    "save_limit": -1,
    "ack_failures": True,
    "catch_up": False,
    "poll": float(os.environ.get("Q_POLL", "0.05")),
    # django-q2 replaces a worker process after `recycle` tasks (its default, 500, is
    # about a second of steps here) and reincarnates it at its next guard cycle (0.5 s):
    # workers doing equal shares reached 500 together, and every step waited ~300 ms
    # (measured: the start-latency p99 went from 9 to 70-225 ms). Replace them on
    # memory instead (`max_rss`, KB of peak resident memory), with a high count as a
    # backstop.
    "recycle": int(os.environ.get("Q_RECYCLE", "100000")),
    "max_rss": int(os.environ.get("Q_MAX_RSS_KB", str(300 * 1024))),
    "label": "Task queue",
}
# A queue per priority, the high one taken first (automation.store.queues,
# docs/user-guide/priority.md).
if REDIS_URL:
    Q_CLUSTER.update(redis=REDIS_URL, broker_class="automation.store.queues.PriorityRedis")
elif "queue" in DATABASES:  # the queue's own file (config/queue.py)
    Q_CLUSTER.update(orm="queue", broker_class="config.queue_broker.QueueBroker")
else:
    Q_CLUSTER.update(orm="default", broker_class="automation.store.queues.PriorityORM")

# --- REST API -------------------------------------------------------------------------
# Bearer tokens for API clients first (so a missing token is a 401 with WWW-Authenticate),
# then staff sessions (with CSRF) for the browser. Throttle counters live in the default
# cache: Redis when REDIS_URL is set, so every server process shares one count; local
# memory otherwise, where each process counts on its own (docs/operating.md).
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": REDIS_URL,
                          "KEY_PREFIX": os.environ.get("ENTITYFLOW_CACHE_PREFIX", "entityflow")}}
# X-Forwarded-For is believed for this many proxy hops in front of the app (0: never),
# so a client cannot pick its own address, and with it a fresh rate limit, by sending it.
ENTITYFLOW_TRUSTED_PROXIES = int(os.environ.get("ENTITYFLOW_TRUSTED_PROXIES", "0"))
ENTITYFLOW_ACCESS_TOKEN_SECONDS = int(os.environ.get("ENTITYFLOW_ACCESS_TOKEN_SECONDS", "3600"))
ENTITYFLOW_REFRESH_TOKEN_SECONDS = int(
    os.environ.get("ENTITYFLOW_REFRESH_TOKEN_SECONDS", str(30 * 86400))
)
ENTITYFLOW_MAX_BODY_BYTES = int(os.environ.get("ENTITYFLOW_MAX_BODY_BYTES", str(1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = ENTITYFLOW_MAX_BODY_BYTES
# requests a minute per path of a webhook trigger with config.public (0 = no limit)
ENTITYFLOW_WEBHOOK_PUBLIC_RATE = int(os.environ.get("ENTITYFLOW_WEBHOOK_PUBLIC_RATE", "60"))
ENTITYFLOW_METRICS_TOKEN = os.environ.get("ENTITYFLOW_METRICS_TOKEN", "")
ENTITYFLOW_WORKER_HEARTBEAT_MAX_AGE_SECONDS = int(
    os.environ.get("ENTITYFLOW_WORKER_HEARTBEAT_MAX_AGE_SECONDS", "60")
)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "automation.api.auth.BearerAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # who may call at all, then whether an API client's scopes allow this call
    "DEFAULT_PERMISSION_CLASSES": ["automation.api.auth.IsApiClientOrStaff",
                                   "automation.api.scopes.HasScope"],
    "DEFAULT_PARSER_CLASSES": ["automation.api.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_THROTTLE_CLASSES": ["automation.api.throttles.ClientRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"auth": os.environ.get("ENTITYFLOW_AUTH_RATE", "60/minute")},
    "NUM_PROXIES": ENTITYFLOW_TRUSTED_PROXIES,
    "DEFAULT_SCHEMA_CLASS": "automation.api.schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "config.api_errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "entityflow API",
    "DESCRIPTION": "Entities, API processes, runs, events and webhooks. Authenticate with "
                   "POST /api/auth/authorize and send `Authorization: Bearer <accessToken>`. "
                   "Every call needs a scope (read, run, define or admin; 403 without it). "
                   "No string or key in a body may contain a NUL character (422 naming it).",
    "VERSION": "1.0.0",
    "SCHEMA_PATH_PREFIX": "/api",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SERVE_INCLUDE_SCHEMA": False,
    # the outbound deliveries, in the document's `webhooks` section (OpenAPI 3.1)
    "OAS_VERSION": "3.1.0",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "automation.api.schema.any_value_includes_null",
                             "automation.api.schema.exact_formats",
                             "automation.api.schema.closed_request_bodies"],
    "WEBHOOKS": ["automation.api.webhook_docs.WORKFLOW_COMPLETED",
                 "automation.api.webhook_docs.WORKFLOW_FAILED",
                 "automation.api.webhook_docs.APPROVAL_REQUESTED_HOOK",
                 "automation.api.webhook_docs.PROCESS_PAUSED_HOOK",
                 "automation.api.webhook_docs.APPROVAL_REMINDED_HOOK",
                 "automation.api.webhook_docs.APPROVAL_ESCALATED_HOOK"],
    # /api/docs/ loads Swagger UI from drf-spectacular-sidecar's static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Engine ---------------------------------------------------------------------------
ENTITYFLOW_ENGINE_ENABLED = env_bool("ENTITYFLOW_ENGINE_ENABLED", True)
ENTITYFLOW_ENCRYPTION_KEY = os.environ.get("ENTITYFLOW_ENCRYPTION_KEY", "")
ENTITYFLOW_OUTBOUND_ALLOWLIST = env_list("ENTITYFLOW_OUTBOUND_ALLOWLIST")
# Directories whose SQLite files a `sql` connection may open (none: SQLite is refused).
ENTITYFLOW_SQL_SQLITE_DIRS = env_list("ENTITYFLOW_SQL_SQLITE_DIRS")
ENTITYFLOW_FUNCTION_MODULES = env_list("ENTITYFLOW_FUNCTION_MODULES")
# Seconds a worker holds a claimed step before the sweeper may take it back.
ENTITYFLOW_STEP_LEASE_SECONDS = int(os.environ.get("ENTITYFLOW_STEP_LEASE_SECONDS", "150"))
# A worker that records a step continues its run's next step itself (no broker round
# trip) for at most this many steps or milliseconds per task, then rings for the next
# one, so one long run cannot hold a worker while others wait (docs/operating.md,
# "Steps continue in the worker"). 0 steps: every step goes through the broker.
ENTITYFLOW_CONTINUE_MAX_STEPS = int(os.environ.get("ENTITYFLOW_CONTINUE_MAX_STEPS", "50"))
ENTITYFLOW_CONTINUE_MAX_MS = int(os.environ.get("ENTITYFLOW_CONTINUE_MAX_MS", "1000"))
# A batch's chunk doorbell asks the broker whether a doorbell of higher priority waits
# (and then gives its worker back) every this many milliseconds of its steps, not before
# each step (docs/user-guide/priority.md). 0: before each step, SQLite's default: there the
# question is one prepared SELECT on the queue's own file, a small part of a step, so a
# waiting high run waits for one step at most (docs/performance.md, "SQLite's saves and
# batches").
ENTITYFLOW_PRIORITY_CHECK_MS = int(os.environ.get(
    "ENTITYFLOW_PRIORITY_CHECK_MS",
    "0" if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" else "10"))
# Seconds a batch's fan-out task holds its batch between renewals (it renews at each
# chunk and while it waits for a rate limit); after that the sweeper starts the fan-out
# again from the batch's cursor (docs/user-guide/batches.md).
ENTITYFLOW_FANOUT_LEASE_SECONDS = int(os.environ.get("ENTITYFLOW_FANOUT_LEASE_SECONDS", "60"))
# A step with config.timeout holds its lease for that long plus this margin.
ENTITYFLOW_LEASE_MARGIN_SECONDS = int(os.environ.get("ENTITYFLOW_LEASE_MARGIN_SECONDS", "30"))
# Rate limits per connection (docs/user-guide/rate-limits.md). Where the shared buckets
# live: "auto" (Redis when it is the broker, else the database), "database" or "redis".
ENTITYFLOW_RATE_LIMIT_BACKEND = os.environ.get("ENTITYFLOW_RATE_LIMIT_BACKEND", "auto")
# A step whose request is free within this many seconds waits for it in the worker (its
# turn reserved); one further off is put off and rung again when it is due.
ENTITYFLOW_RATE_LIMIT_MAX_WAIT_SECONDS = float(
    os.environ.get("ENTITYFLOW_RATE_LIMIT_MAX_WAIT_SECONDS", "2"))
# Kept below a vendor's window: N per W seconds is spread over W plus this margin, so the
# jitter between our grant and the vendor's clock cannot tip a window over N.
ENTITYFLOW_RATE_LIMIT_MARGIN_SECONDS = float(
    os.environ.get("ENTITYFLOW_RATE_LIMIT_MARGIN_SECONDS", "0.5"))
# PostgreSQL: the engine's own bookkeeping (claims, step records, event dispatch) commits
# without waiting for the disk; everything before anything leaves the system is flushed
# (entities.db.commits). Off: every commit waits for the disk.
ENTITYFLOW_RELAXED_COMMITS = env_bool("ENTITYFLOW_RELAXED_COMMITS", True)
# PostgreSQL: claim a step, and record a completed one, in one statement each
# (automation.store.postgresql). Off: the general transactional way only.
ENTITYFLOW_ONE_STATEMENT_STEPS = env_bool("ENTITYFLOW_ONE_STATEMENT_STEPS", True)
# PostgreSQL: the statements of every save's event dispatch and every API trigger are
# planned once per connection (PREPARE, entities.db.prepared); a connection that loses them
# (a pooler in transaction mode) stops preparing by itself. Off: never prepared.
ENTITYFLOW_PREPARED_STATEMENTS = env_bool("ENTITYFLOW_PREPARED_STATEMENTS", True)
# Synchronous replies (?wait=, a webhook's respond "result"; automation.store.waiting):
# how a waiting request learns that its run settled. "auto": LISTEN/NOTIFY on PostgreSQL,
# else Redis pub/sub when REDIS_URL is set, else polling; or "postgresql", "redis", "poll".
# Polling reads every ENTITYFLOW_WAIT_POLL_SECONDS; with notifications the runs waited on
# are still re-read every ENTITYFLOW_WAIT_RECHECK_SECONDS (a notification lost with a
# dropped connection costs at most that long).
ENTITYFLOW_WAIT_NOTIFY = os.environ.get("ENTITYFLOW_WAIT_NOTIFY", "auto")
ENTITYFLOW_WAIT_POLL_SECONDS = float(os.environ.get("ENTITYFLOW_WAIT_POLL_SECONDS", "0.25"))
ENTITYFLOW_WAIT_RECHECK_SECONDS = float(os.environ.get("ENTITYFLOW_WAIT_RECHECK_SECONDS", "2"))

# --- Tracing (integrations.tracing, docs/operating.md#tracing) --------------------------
# OpenTelemetry spans per run and step, W3C traceparent in and out. "otlp" (the optional
# extra entityflow[otlp]; endpoint and headers from the standard OTEL_EXPORTER_OTLP_*
# variables), "console" (one JSON span per line to ENTITYFLOW_TRACING_FILE, else standard
# output) or "off". Unset: otlp when an OTLP endpoint is configured, else off.
_OTLP_ENDPOINT = (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                  or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
ENTITYFLOW_TRACING = os.environ.get("ENTITYFLOW_TRACING", "otlp" if _OTLP_ENDPOINT else "off")
ENTITYFLOW_TRACING_FILE = os.environ.get("ENTITYFLOW_TRACING_FILE", "")
ENTITYFLOW_TRACING_SERVICE = os.environ.get("OTEL_SERVICE_NAME", "entityflow")

# --- Retention (automation.services.retention, docs/operating.md#retention) -----------
# Days each kind of row is kept; 0 keeps it forever. `manage.py prune` and a daily
# schedule in the worker delete what is older, ENTITYFLOW_PRUNE_CHUNK rows per transaction.
ENTITYFLOW_RETENTION_DAYS = {
    kind: int(os.environ.get(f"ENTITYFLOW_RETAIN_{kind.upper()}_DAYS", str(days)))
    for kind, days in (("runs", 30), ("events", 30), ("webhook_deliveries", 30),
                       ("inbound_deliveries", 30), ("task_results", 7))
}
ENTITYFLOW_PRUNE_CHUNK = int(os.environ.get("ENTITYFLOW_PRUNE_CHUNK", "1000"))
# /metrics: finished runs by status and the step-duration histogram cover the most
# recent this many runs and step runs, so a scrape costs the same at any table size.
ENTITYFLOW_METRICS_WINDOW = int(os.environ.get("ENTITYFLOW_METRICS_WINDOW", "10000"))

# --- Integrations ---------------------------------------------------------------------
# Where people reach this site: one-click approval links in emails start with it.
ENTITYFLOW_PUBLIC_URL = os.environ.get("ENTITYFLOW_PUBLIC_URL", "http://localhost:8000")
HUBSPOT_BASE_URL = os.environ.get("HUBSPOT_BASE_URL", "https://api.hubapi.com")
DROPBOX_API_BASE_URL = os.environ.get("DROPBOX_API_BASE_URL", "https://api.dropboxapi.com")
DROPBOX_CONTENT_BASE_URL = os.environ.get(
    "DROPBOX_CONTENT_BASE_URL", "https://content.dropboxapi.com"
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # django-q2 logs a line per task and per enqueued task at INFO; Q_LOG_LEVEL sets its
    # level apart from LOG_LEVEL (`dev.py run` sets WARNING unless --verbose).
    # Q_CLUSTER["log_level"] would be read only if no handler were configured.
    "loggers": ({"django-q": {"level": os.environ["Q_LOG_LEVEL"].upper()}}
                if os.environ.get("Q_LOG_LEVEL") else {}),
}
