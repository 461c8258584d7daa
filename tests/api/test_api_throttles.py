"""Rate limits (docs/rest-api.md#rate-limits): X-Forwarded-For is believed only for
ENTITYFLOW_TRUSTED_PROXIES hops, and with REDIS_URL the counts live in Redis, shared by
every server process."""

import os
import subprocess
import sys
import uuid

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from automation.services.api_auth import api_client_create
from tests.api.support import API_DB, bearer_client

pytestmark = API_DB


def authorize_statuses(forwarded_for) -> list[int]:
    """100 authorize calls (wrong secret) from REMOTE_ADDR 127.0.0.1, each sending the
    X-Forwarded-For that `forwarded_for(i)` gives (None: no header)."""
    client = APIClient()
    statuses = []
    for i in range(100):
        headers = {} if forwarded_for(i) is None else {"HTTP_X_FORWARDED_FOR": forwarded_for(i)}
        response = client.post("/api/auth/authorize", {"key": "efk_x", "secret": "nope"},
                               format="json", **headers)
        statuses.append(response.status_code)
    return statuses


def test_varying_x_forwarded_for_is_throttled_like_one_client():
    one_client = authorize_statuses(lambda i: None)
    cache.clear()
    varying = authorize_statuses(lambda i: f"203.0.113.{i}, 10.0.0.{i % 7}")
    assert one_client.count(429) == 40 and one_client.count(401) == 60
    assert varying == one_client


def test_trusted_proxy_hops_name_the_client():
    rest = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    with override_settings(REST_FRAMEWORK=rest):
        # one proxy in front: its X-Forwarded-For names 100 different callers
        assert 429 not in authorize_statuses(lambda i: f"203.0.113.{i}")
        cache.clear()
        # ...and one caller behind it is counted as one, whatever it prepends itself
        same = authorize_statuses(lambda i: f"198.51.100.{i}, 203.0.113.9")
    assert same.count(429) == 40


@pytest.fixture
def redis_cache():
    """The default cache on Redis (what REDIS_URL configures), under a key prefix of this
    test's own; its keys are deleted afterwards (never the whole database)."""
    url = settings.REDIS_URL
    if not url:
        pytest.skip("needs REDIS_URL (the PostgreSQL + Redis lane)")
    prefix = f"test-throttle-{uuid.uuid4().hex}"
    caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": url, "KEY_PREFIX": prefix}}
    direct = redis.Redis.from_url(url)
    with override_settings(CACHES=caches):
        yield direct, prefix
    for key in direct.scan_iter(f"{prefix}:*"):
        direct.delete(key)


def test_throttle_counts_live_in_redis(redis_cache):
    direct, prefix = redis_cache
    client, _ = api_client_create(name="Limited", rate_limit_per_minute=5)
    api = bearer_client(client)
    statuses = [api.get("/api/runs").status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    # the count is in Redis, where every other server process reads and adds to it
    keys = [k.decode() for k in direct.scan_iter(f"{prefix}:*")]
    assert any(k.endswith(f"throttle_client_{client.pk}") for k in keys), keys


def test_settings_use_redis_for_the_cache_when_redis_url_is_set():
    code = ("import django, os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings.base'; "
            "from django.conf import settings; print(settings.CACHES['default']['BACKEND'], "
            "settings.REST_FRAMEWORK['NUM_PROXIES'])")
    env_redis = {"REDIS_URL": "redis://127.0.0.1:1/0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env_redis}, check=True).stdout.split()
    assert out == ["django.core.cache.backends.redis.RedisCache", "0"]
    without = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=without, check=True).stdout.split()
    assert out == ["django.core.cache.backends.locmem.LocMemCache", "0"]
