"""Connector registry. Importing this module registers the built-in connectors, so the
automation app can reach every connector through it without importing one by name."""

import importlib

from integrations.base import Action, ConnectionConfig, Connector
from integrations.exceptions import ConnectorConfigError

BUILTIN_CONNECTOR_MODULES = (
    "integrations.hubspot",
    "integrations.dropbox",
    "integrations.http",
    "integrations.webhook",
    "integrations.openai",
    "integrations.sql",
)

_connectors: dict[str, type[Connector]] = {}


def register(cls: type[Connector]) -> type[Connector]:
    """Class decorator: `@register class HubSpotConnector(Connector): slug = "hubspot"`."""
    slug = getattr(cls, "slug", "")
    if not slug or slug != slug.lower():
        raise ValueError(f"{cls.__name__} needs a lowercase slug to be registered")
    existing = _connectors.get(slug)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"connector slug {slug!r} is already taken by {existing.__name__}")
    _connectors[slug] = cls
    return cls


def get_connector_class(slug: str) -> type[Connector]:
    try:
        return _connectors[slug]
    except KeyError:
        raise ConnectorConfigError(f"There is no connector called {slug!r}.") from None


def all_connectors() -> dict[str, type[Connector]]:
    return dict(sorted(_connectors.items()))


def get_connector(connection: ConnectionConfig, **kwargs) -> Connector:
    """An instance for `connection.provider`; kwargs go to the constructor."""
    return get_connector_class(connection.provider)(connection, **kwargs)


def get_action(qualified_name: str) -> tuple[type[Connector], str, Action]:
    """Resolve a function action such as "hubspot.upsert_contact"."""
    slug, _, action = qualified_name.partition(".")
    cls = get_connector_class(slug)
    if action not in cls.actions:
        raise ConnectorConfigError(f"{cls.display_name} has no action {action!r}.")
    return cls, action, cls.actions[action]


for _module in BUILTIN_CONNECTOR_MODULES:
    importlib.import_module(_module)
