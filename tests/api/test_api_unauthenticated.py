"""Every endpoint under /api/ but authorize/refresh/schema/docs needs credentials."""

import uuid

from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.converters import IntConverter, SlugConverter, StringConverter, UUIDConverter
from django.urls.resolvers import RoutePattern
from rest_framework.test import APIClient

from automation.api.urls import PUBLIC
from tests.api.support import API_DB, assert_error

pytestmark = API_DB

DUMMY = {UUIDConverter: str(uuid.uuid4()), IntConverter: "1", SlugConverter: "dummy",
         StringConverter: "dummy"}


def api_patterns():
    """(name, path, view class) of every pattern included under api/."""
    found = []
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and str(entry.pattern) == "api/":
            for pattern in entry.url_patterns:
                assert isinstance(pattern, URLPattern)
                found.append((pattern.name, "/api/" + concrete(pattern), pattern.callback.cls))
    return found


def concrete(pattern: URLPattern) -> str:
    if not isinstance(pattern.pattern, RoutePattern):  # the catch-all re_path
        return "no/such/endpoint"
    route = str(pattern.pattern)
    for name, converter in pattern.pattern.converters.items():
        for prefix in ("uuid", "int", "slug", "str"):
            route = route.replace(f"<{prefix}:{name}>", DUMMY[type(converter)])
    return route


def test_the_walk_finds_every_endpoint():
    names = {name for name, _, _ in api_patterns()}
    assert {"case-create", "definitions", "execution-detail", "events", "functions",
            "entity-process", "batch-retry-failed", "approval-decide", "runs", "webhooks",
            "not-found"} <= names
    assert PUBLIC <= names


def test_every_endpoint_without_a_token_is_401_in_the_one_format():
    anon = APIClient()
    checked = 0
    for name, path, view in api_patterns():
        if name in PUBLIC:
            continue
        verbs = [m for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m)]
        assert verbs, name
        for verb in verbs:
            response = getattr(anon, verb)(path, {}, format="json")
            assert_error(response, 401, "unauthorized")
            assert response["WWW-Authenticate"].startswith("Bearer"), (verb, path)
            checked += 1
    assert checked >= 35


def test_public_endpoints_answer_without_a_token():
    anon = APIClient()
    assert anon.get("/api/schema/").status_code == 200
    assert anon.get("/api/docs/").status_code == 200
    assert_error(anon.post("/api/auth/authorize", {}, format="json"), 422)
    assert_error(anon.post("/api/auth/refresh", {"refreshToken": "x"}, format="json"), 401)
