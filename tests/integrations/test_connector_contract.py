"""Every registered connector implements the whole base interface."""

import inspect

import pytest

from integrations import registry
from integrations.base import Action, ActionResult, ConnectionConfig, Connector, CredentialField
from integrations.exceptions import ConnectorConfigError

SLUGS = ["dropbox", "http", "hubspot", "openai", "sql", "webhook"]
# A usable credential set where any text would not do (a database URL has a shape).
EXAMPLES = {"sql": {"url": "postgresql://app@db.example.com:5432/shop"}}
INTERFACE = ["test_connection", "run", "validate_params", "validate_credentials", "secret_values"]


def test_builtin_connectors_are_registered():
    assert list(registry.all_connectors()) == SLUGS


@pytest.mark.parametrize("slug", SLUGS)
def test_connector_implements_the_interface(slug):
    cls = registry.get_connector_class(slug)
    assert issubclass(cls, Connector)
    assert cls.slug == slug and cls.display_name
    assert cls.test_connection is not Connector.test_connection, "test_connection() missing"
    for name in INTERFACE:
        assert callable(getattr(cls, name))
    assert cls.actions, "a connector needs at least one action"
    for action_name, action in cls.actions.items():
        assert isinstance(action, Action)
        assert action.description
        method = getattr(cls, action.method, None)
        assert callable(method), f"{slug}.{action_name} names a missing method"
        assert list(inspect.signature(method).parameters) == ["self", "params"]
        schema = action.params_schema
        assert schema["type"] == "object" and isinstance(schema.get("properties"), dict)
        assert schema.get("additionalProperties") is False
        assert isinstance(cls.validate_params(action_name, {}), dict)
        assert cls.validate_params(action_name, {}, partial=True) == {}
    fields = cls.credential_fields
    assert fields and all(isinstance(f, CredentialField) and f.label for f in fields)
    assert len({f.name for f in fields}) == len(fields)
    assert isinstance(cls.validate_credentials({}), dict)
    everything = {f.name: (f.choices[-1] if f.choices else "value-123456") for f in fields}
    everything.update(EXAMPLES.get(slug, {}))
    assert cls.validate_credentials(everything) == {}, "a full credential set must be usable"
    connector = cls(ConnectionConfig(slug, {"token": "abcdef"}), idempotency_key="k", timeout=3)
    assert connector.timeout == 3 and connector.idempotency_key == "k"
    assert "abcdef" in connector.secret_values()


@pytest.mark.parametrize("slug", SLUGS)
def test_connector_describes_what_callers_need(slug):
    """automation reads these instead of naming connectors: every one must say them."""
    cls = registry.get_connector_class(slug)
    assert isinstance(cls.explicit_connection_only, bool)
    assert isinstance(cls.default_timeout, float) and cls.default_timeout > 0
    assert isinstance(cls.creates_external_links, bool)
    for action in cls.actions.values():
        assert isinstance(action.maps_response, bool)
        assert isinstance(action.entity_content, bool)
        assert set(action.literal_params) <= set(action.params_schema["properties"])
        for object_type in (action.updates_existing_object_type,
                            action.overwrites_existing_object_type):
            assert object_type is None or (object_type and cls.creates_external_links)
        if action.entity_content:
            assert "content" in action.params_schema["properties"]
        if action.overwrites_existing_object_type:
            assert "overwrite" in action.params_schema["properties"]["mode"]["enum"]
        if action.updates_existing_object_type:
            assert "externalId" in action.params_schema["properties"]


def test_builtin_connectors_describe_themselves_as_before():
    """What automation used to hard-code, now said by each connector."""
    connectors = registry.all_connectors()
    assert {s for s, c in connectors.items() if c.explicit_connection_only} == {"http", "webhook"}
    assert {s for s, c in connectors.items() if c.creates_external_links} == {"dropbox", "hubspot"}
    assert {s: c.default_timeout for s, c in connectors.items() if c.default_timeout != 10.0} == {
        "openai": 60.0}
    actions = {f"{s}.{name}": spec for s, c in connectors.items() for name, spec in c.actions.items()}
    assert {name for name, spec in actions.items() if spec.maps_response} == {"http.request"}
    assert {name: spec.updates_existing_object_type for name, spec in actions.items()
            if spec.updates_existing_object_type} == {"hubspot.upsert_deal": "deal"}
    assert {name: spec.overwrites_existing_object_type for name, spec in actions.items()
            if spec.overwrites_existing_object_type} == {"dropbox.upload_file": "file"}
    assert {name for name, spec in actions.items() if spec.entity_content} == {
        "dropbox.upload_file"}


def test_get_action_resolves_qualified_names():
    cls, action, spec = registry.get_action("hubspot.upsert_contact")
    assert cls.slug == "hubspot" and action == "upsert_contact" and spec.method
    with pytest.raises(ConnectorConfigError):
        registry.get_action("hubspot.nope")
    with pytest.raises(ConnectorConfigError, match="no connector called 'nope'"):
        registry.get_action("nope.thing")


def test_get_connector_builds_by_provider():
    connector = registry.get_connector(ConnectionConfig("http", {}))
    assert type(connector).slug == "http"


class Forgetful(Connector):
    slug = "forgetful"
    display_name = "Forgetful"
    actions = {"go": Action("go", {"type": "object", "properties": {},
                                   "additionalProperties": False}, "does nothing")}


def test_forgotten_methods_fail_loudly():
    connector = Forgetful(ConnectionConfig("forgetful", {}))
    with pytest.raises(NotImplementedError, match="test_connection"):
        connector.test_connection()
    with pytest.raises(NotImplementedError, match="go"):
        connector.run("go", {})


def test_run_rejects_unknown_actions_and_bad_params():
    connector = registry.get_connector(ConnectionConfig("hubspot", {"accessToken": "x"}))
    with pytest.raises(ConnectorConfigError, match="no action 'explode'"):
        connector.run("explode", {})
    assert connector.validate_params("explode", {}) == {
        "action": ["unknown action 'explode' for hubspot"]}
    with pytest.raises(ConnectorConfigError) as exc:
        connector.run("upsert_contact", {"email": 5})
    assert exc.value.fields == {"email": ["must be of type string"]}


def test_register_rejects_bad_or_duplicate_slugs():
    class NoSlug(Connector):
        pass

    with pytest.raises(ValueError):
        registry.register(NoSlug)

    class Impostor(Connector):
        slug = "hubspot"

    with pytest.raises(ValueError, match="already taken"):
        registry.register(Impostor)
    assert registry.get_connector_class("hubspot").__name__ == "HubSpotConnector"


def test_action_result_defaults_are_independent():
    a, b = ActionResult(output={}), ActionResult(output={})
    a.external_links.append({"provider": "x"})
    assert b.external_links == [] and b.updated_credentials is None
    assert ConnectionConfig("x", {}).options == {}
