"""Tests: unit-level tests run queued tasks synchronously; integration tests start a
real qcluster with their own settings (see tests/conftest.py)."""

import os

from .base import *  # noqa: F401,F403
from .base import BASE_DIR, DATABASES, Q_CLUSTER, queue_file

# A test database per test session (process id), so parallel sessions never share one;
# SQLite's is a file because real worker processes must open it too.
(BASE_DIR / "var").mkdir(exist_ok=True)
_SESSION = os.environ.get("ENTITYFLOW_TEST_SESSION", str(os.getpid()))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / f"test-{_SESSION}.sqlite3")}
    if "queue" in DATABASES:  # the queue's file beside it, as a worker given that file finds it
        _QUEUE_TEST = queue_file(DATABASES["default"]["TEST"]["NAME"])
        # NAME too: a session that never sets the queue's test file up still cannot
        # reach a developer's queue file
        DATABASES["queue"].update(NAME=_QUEUE_TEST, TEST={"NAME": _QUEUE_TEST, "DEPENDENCIES": []})
        # created (and migrated) first: default's data migrations write django-q2 schedules
        DATABASES["default"]["TEST"]["DEPENDENCIES"] = ["queue"]
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_entityflow_{_SESSION}"}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Own queue name per session: parallel sessions on one Redis never take each other's tasks.
Q_CLUSTER = {**Q_CLUSTER, "name": f"entityflow-test-{_SESSION}",
             "sync": os.environ.get("ENTITYFLOW_Q_SYNC", "1") == "1"}
ENTITYFLOW_OUTBOUND_ALLOWLIST = ["127.0.0.1", "localhost"]
# whitenoise looks static files up per request instead of indexing STATIC_ROOT at start:
# tests run without `collectstatic` (tests/config collects into a folder of their own).
WHITENOISE_AUTOREFRESH = True
# Tests clear the cache between tests: a local one per process, never a shared Redis
# (clearing a Redis cache empties its whole database). tests/api/test_api_throttles.py
# points the cache at Redis under a key prefix of its own to check the shared count.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
