"""Fixtures for the integrations tests: fake vendor servers on 127.0.0.1 and settings.

These tests need no database. They run under pytest-django with the project's settings,
or without it (`pytest -p no:django tests/integrations`), in which case minimal Django
settings are configured here. Settings are changed with `override_settings`, which
works either way.
"""

import os
import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
for _path in (str(_HERE.parents[1]), str(_HERE)):  # the project root, and `fakes`
    if _path not in sys.path:
        sys.path.insert(0, _path)

from django.conf import settings  # noqa: E402
from django.test import override_settings  # noqa: E402

if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
    settings.configure(ENTITYFLOW_OUTBOUND_ALLOWLIST=[])

from fakes.dropbox import FakeDropbox  # noqa: E402
from fakes.echo import EchoServer  # noqa: E402
from fakes.hubspot import FakeHubSpot  # noqa: E402
from fakes.openai import FakeOpenAI  # noqa: E402

from integrations.base import ConnectionConfig  # noqa: E402
from integrations.registry import get_connector  # noqa: E402


@pytest.fixture
def override():
    """`override(NAME=value, ...)`: settings changes undone after the test."""
    active = []

    def apply(**values):
        changer = override_settings(**values)
        changer.enable()
        active.append(changer)

    yield apply
    for changer in reversed(active):
        changer.disable()


@pytest.fixture
def no_allowlist(override):
    override(ENTITYFLOW_OUTBOUND_ALLOWLIST=[])


@pytest.fixture
def allow_loopback(override):
    override(ENTITYFLOW_OUTBOUND_ALLOWLIST=["127.0.0.1"])


def _serve(fake):
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def hubspot_fake(allow_loopback):
    yield from _serve(FakeHubSpot())


@pytest.fixture
def dropbox_fake(allow_loopback):
    yield from _serve(FakeDropbox())


@pytest.fixture
def openai_fake(allow_loopback):
    yield from _serve(FakeOpenAI())


@pytest.fixture
def echo_server(allow_loopback):
    yield from _serve(EchoServer())


@pytest.fixture
def sleeps():
    """Connectors built by the fixtures below record their waits here instead of sleeping."""
    return []


def _connect(provider, credentials, base_url, sleeps, options=None, **kwargs):
    connector = get_connector(
        ConnectionConfig(provider, credentials, base_url=base_url, options=options or {}),
        **kwargs,
    )
    connector.sleep = sleeps.append
    return connector


@pytest.fixture
def hubspot(hubspot_fake, sleeps):
    return _connect("hubspot", {"accessToken": hubspot_fake.token}, hubspot_fake.url, sleeps)


@pytest.fixture
def dropbox_credentials(dropbox_fake):
    return {"accessToken": dropbox_fake.access_token, "refreshToken": dropbox_fake.refresh_token,
            "appKey": dropbox_fake.app_key, "appSecret": dropbox_fake.app_secret}


@pytest.fixture
def dropbox(dropbox_fake, dropbox_credentials, sleeps):
    return _connect("dropbox", dropbox_credentials, dropbox_fake.url, sleeps,
                    options={"contentBaseUrl": dropbox_fake.content_url})


@pytest.fixture
def openai(openai_fake, sleeps):
    return _connect("openai", {"apiKey": openai_fake.api_key}, openai_fake.base_url, sleeps,
                    options={"model": "gpt-4o-mini"})


@pytest.fixture
def connect(sleeps):
    """`connect(provider, credentials, base_url, options=None, **kwargs)` → a connector."""
    def build(provider, credentials, base_url=None, options=None, **kwargs):
        return _connect(provider, credentials, base_url, sleeps, options, **kwargs)

    return build
