"""Connector actions as functions: `hubspot.upsert_deal`, `dropbox.upload_file`,
`http.request`, `webhook.post`, `openai.chat_json`, … and `call_connector`, which agent
steps use too.

Which actions there are, and what each needs beyond its params (a response mapping,
updating the object an earlier run created, an explicit connection, a longer timeout),
each connector says itself (integrations.base.Connector and Action); this module reads
it from integrations.registry and never names a connector.

A function step's params (a Function row's config merged with the step's
`config.params`) are templates: `{{ expression }}` placeholders are rendered against the
step's scope before the connector sees them, except the response mapping and the params
an action declares literal (the SQL text of `sql.*`). Credentials are decrypted only to
build the connector, and their values are registered for redaction before any call is
made.
"""

import csv
import io
import json
import logging
from typing import Any

from django.conf import settings

from automation.connections import services as connection_services
from automation.connections.secrets import SecretDecryptError
from automation.exceptions import StepFailedError
from automation.functions import ledger, ratelimit, response_mapping
from automation.functions.redaction import register_secrets
from automation.functions.registry import StepContext, function
from automation.functions.templating import PLACEHOLDER, render_text
from automation.models import Connection
from entities import selectors as entity_selectors
from entities import services as entity_services
from entities.expressions import evaluate
from entities.outbox import entity_snapshot
from integrations.base import Action, ConnectionConfig, Connector
from integrations.exceptions import ConnectorAuthError, ConnectorError
from integrations.registry import all_connectors, get_connector

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0  # a provider no connector serves (its call fails anyway)
ENTITY_CONTENT = ("entity.json", "entity.csv")
CONNECTION_PARAM = {"type": "string", "minLength": 1,
                    "description": "Name of the connection, when the function row has none."}


# -- the functions -----------------------------------------------------------------

def _register(provider: str, action: str, spec: Action) -> None:
    """`provider.action` as a function, its params schema plus `connection` (and the
    `response` mapping where the action's output may be mapped)."""
    qualified = f"{provider}.{action}"
    schema = dict(spec.params_schema)
    schema["properties"] = {**schema.get("properties", {}), "connection": CONNECTION_PARAM}
    mapped = spec.maps_response
    if mapped:
        schema["properties"][response_mapping.PARAM] = response_mapping.SCHEMA

    def handler(ctx: StepContext) -> Any:
        raw = dict(ctx.params or {})
        mapping = raw.pop(response_mapping.PARAM, None) if mapped else None
        literal = {key: raw.pop(key) for key in spec.literal_params if key in raw}
        params = {**render_params(raw, ctx.scope, schema), **literal}  # nor are these
        name = params.pop("connection", None)
        if spec.entity_content and params.get("content") in ENTITY_CONTENT:
            params["content"] = entity_content(_require_entity(ctx), params["content"])
        output = call_connector(ctx, provider=provider, action=action, connection_name=name,
                                params=params)
        if mapping:
            output = response_mapping.map_response(mapping, output, ctx.scope)
            ctx.log(f"response mapped to {', '.join(sorted(output))}")
        return output

    handler.__name__ = qualified.replace(".", "_")
    function(qualified, schema=schema, description=spec.description, provider=provider,
             check=response_mapping.mapping_errors if mapped else None)(handler)


for _slug, _connector in all_connectors().items():
    for _action, _spec in _connector.actions.items():
        _register(_slug, _action, _spec)


# -- calling a connector -------------------------------------------------------------

def call_connector(ctx: StepContext, *, provider: str, action: str,
                   connection_name: str | None, params: dict) -> Any:
    """Run `provider.action` for a step and return its output (JSON).

    Credentials are redacted from everything the step records; renewed credentials are
    stored (also when the action then failed); external links are written to the run's
    entity. Connector errors propagate: the engine retries the retryable ones.
    """
    params = {key: value for key, value in params.items() if value is not None}
    spec = _action_spec(provider, action)
    if spec is not None and spec.makes_effect(params):
        # Keyed on the params as the step rendered them, before the entity's links are
        # looked up: the effect's first call may have written those links.
        return ledger.once(ctx, f"{provider}.{action}", params, lambda: _call(
            ctx, provider=provider, action=action, connection_name=connection_name,
            params=params))
    return _call(ctx, provider=provider, action=action, connection_name=connection_name,
                 params=params)


def _call(ctx: StepContext, *, provider: str, action: str, connection_name: str | None,
          params: dict) -> Any:
    connection = find_connection(ctx, provider, connection_name)
    params = _update_existing(ctx, provider, action, params)
    throttle = ratelimit.throttle_for(ctx, connection, provider)
    connector = get_connector(_config(connection, provider), idempotency_key=ctx.idempotency_key,
                              timeout=_timeout(provider), throttle=throttle)
    register_secrets([*connector.secret_values(), *_param_secrets(params)])
    try:
        with connector:
            result = connector.run(action, params)
    except ConnectorError as err:
        _store_renewed(connection, err.updated_credentials)
        _explain(err, connection, provider)
        raise
    finally:
        if throttle is not None:
            throttle.log_to(ctx)
    _store_renewed(connection, result.updated_credentials)
    _write_links(ctx, result.external_links)
    ctx.log(f"{provider}.{action} via {connection.name if connection else 'no connection'}")
    return result.output


def find_connection(ctx: StepContext, provider: str, name: str | None) -> Connection | None:
    """The step's connection: the function row's, else the named one, else the only one
    of that provider (not for a connector that is explicit_connection_only: it then goes
    without credentials)."""
    connection = ctx.connection
    if connection is None and name:
        connection = Connection.objects.filter(name=name).first()
        if connection is None:
            raise StepFailedError(f"No connection named '{name}'.", code="connection_not_found",
                                  retryable=False)
    if connection is None and not _explicit_connection_only(provider):
        candidates = list(Connection.objects.filter(provider=provider)[:2])
        if not candidates:
            raise StepFailedError(
                f"No {provider} connection configured: add a connection with provider "
                f"'{provider}' or name one in the function.", code="connection_missing",
                retryable=False)
        if len(candidates) > 1:
            raise StepFailedError(
                f"There are several {provider} connections; name the one to use in the function.",
                code="connection_ambiguous", retryable=False)
        connection = candidates[0]
    if connection is not None and connection.provider != provider:
        raise StepFailedError(
            f"The connection '{connection.name}' is a {connection.provider} connection, "
            f"but this step needs {provider}.", code="connection_wrong_provider", retryable=False)
    return connection


def _config(connection: Connection | None, provider: str) -> ConnectionConfig:
    if connection is None:
        return ConnectionConfig(provider=provider)
    try:
        return connection_services.connection_config(connection)
    except SecretDecryptError as exc:
        raise StepFailedError(f"Connection '{connection.name}': {exc.message}",
                              code=exc.code, retryable=False) from None


def _connector_class(provider: str) -> type[Connector] | None:
    return all_connectors().get(provider)


def _explicit_connection_only(provider: str) -> bool:
    cls = _connector_class(provider)
    return cls is not None and cls.explicit_connection_only


def _action_spec(provider: str, action: str) -> Action | None:
    cls = _connector_class(provider)
    return cls.actions.get(action) if cls is not None else None


def _timeout(provider: str) -> float:
    """`<PROVIDER>_TIMEOUT` from settings, else the connector's own default."""
    cls = _connector_class(provider)
    default = cls.default_timeout if cls is not None else DEFAULT_TIMEOUT
    return float(getattr(settings, f"{provider.upper()}_TIMEOUT", default))


def _param_secrets(params: dict) -> list[str]:
    secret = params.get("secret")
    return [secret] if isinstance(secret, str) else []


def _update_existing(ctx: StepContext, provider: str, action: str, params: dict) -> dict:
    """Update what this entity's earlier runs created instead of creating another one."""
    spec = _action_spec(provider, action)
    if ctx.entity is None or spec is None:
        return params
    object_type = spec.updates_existing_object_type
    if object_type and not params.get("externalId"):
        link = entity_selectors.external_link_get(entity=ctx.entity, provider=provider,
                                                  object_type=object_type)
        if link is not None:
            ctx.log(f"updating the existing {provider} {object_type} {link.external_id}")
            return {**params, "externalId": link.external_id}
    object_type = spec.overwrites_existing_object_type
    if object_type and "mode" not in params:
        link = entity_selectors.external_link_get(entity=ctx.entity, provider=provider,
                                                  object_type=object_type)
        if link is not None:  # a re-run replaces the entity's file rather than conflicting
            return {**params, "mode": "overwrite"}
    return params


def _store_renewed(connection: Connection | None, updated: dict | None) -> None:
    if connection is None or not updated:
        return
    register_secrets(str(v) for v in updated.values())
    connection_services.connection_credentials_merge(connection=connection, updated=updated)


def _explain(err: ConnectorError, connection: Connection | None, provider: str) -> None:
    """Say which connection to fix when the vendor rejected its credentials."""
    if isinstance(err, ConnectorAuthError):
        where = f"connection '{connection.name}'" if connection else f"the {provider} credentials"
        err.message = f"{err.message} Check the token of {where} (and its scopes)."
        err.args = (err.message,)


def _write_links(ctx: StepContext, links: list[dict]) -> None:
    if ctx.entity is None:
        return
    for link in links:
        entity_services.external_link_upsert(
            entity=ctx.entity, provider=link["provider"], object_type=link["objectType"],
            external_id=str(link["externalId"]), url=link.get("url") or "")


# -- params --------------------------------------------------------------------------

def render_params(template: Any, scope: dict, schema: dict | None = None) -> Any:
    """Render `{{ expression }}` placeholders. A string that is one placeholder and nothing
    else keeps the value's type (a number, an object); a top-level param whose schema
    wants a string gets the text form."""
    rendered = _render(template, scope)
    if isinstance(rendered, dict) and schema:
        props = schema.get("properties", {})
        for key, value in rendered.items():
            if _wants_string(props.get(key)) and isinstance(value, int | float | bool):
                rendered[key] = json.dumps(value)
    return rendered


def _render(template: Any, scope: dict) -> Any:
    if isinstance(template, dict):
        return {key: _render(value, scope) for key, value in template.items()}
    if isinstance(template, list):
        return [_render(value, scope) for value in template]
    if isinstance(template, str):
        match = PLACEHOLDER.match(template)
        if match and match.end() == len(template):
            return evaluate(match.group(1), scope)
        return render_text(template, scope)
    return template


def _wants_string(schema: dict | None) -> bool:
    types = (schema or {}).get("type")
    names = [types] if isinstance(types, str) else list(types or [])
    return "string" in names and not {"number", "integer", "boolean"} & set(names)


def entity_content(entity, kind: str) -> str:
    """`entity.json` / `entity.csv`: the entity's reference, status and data as a file."""
    snapshot = entity_snapshot(entity)
    record = {key: snapshot[key] for key in ("id", "type", "reference", "status", "data")}
    if kind == "entity.json":
        return json.dumps(record, indent=2, ensure_ascii=False, default=str)
    row = {"reference": record["reference"], "status": record["status"],
           **_flatten(record["data"] or {})}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(row))
    writer.writeheader()
    writer.writerow(row)
    return out.getvalue()


def _flatten(data: dict, prefix: str = "") -> dict:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list) else value
    return flat


def _require_entity(ctx: StepContext):
    if ctx.entity is None:
        raise StepFailedError("content 'entity.json'/'entity.csv' needs a run with an entity.",
                              code="no_entity", retryable=False)
    return ctx.entity
