"""Saving agents (docs/user-guide/agents.md): every field checked, 422 naming the field,
nothing written when anything is wrong; each change bumps the agent's version."""

from typing import Any

from django.db import transaction
from django.db.models import F
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from automation.exceptions import AgentInvalidError
from automation.functions.registry import function_exists
from automation.models import Agent, Connection

AGENT_PROVIDER = "openai"
FIELDS = ("instructions", "connection", "model", "tools", "output_schema", "max_iterations",
          "max_tool_calls", "max_tokens", "timeout_seconds", "input_price", "output_price",
          "description")
LIMITS = {"max_iterations": (1, 100), "max_tool_calls": (0, 1000),
          "max_tokens": (1, 10_000_000), "timeout_seconds": (1, 86_400)}
# model field -> the API's name for it (errors name the field the caller sent)
API_NAMES = {"output_schema": "outputSchema", "max_iterations": "maxIterations",
             "max_tool_calls": "maxToolCalls", "max_tokens": "maxTokens",
             "timeout_seconds": "timeoutSeconds", "input_price": "inputPrice",
             "output_price": "outputPrice"}


def agent_problems(values: dict[str, Any]) -> dict[str, list[str]]:
    """What is wrong with an agent's fields, by their API names."""
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(API_NAMES.get(field, field), []).append(message)

    if not str(values.get("instructions") or "").strip():
        add("instructions", "An agent needs instructions.")
    connection = values.get("connection")
    if connection is not None and connection.provider != AGENT_PROVIDER:
        add("connection", f"'{connection.name}' is a {connection.provider} connection; an agent "
                          f"needs an {AGENT_PROVIDER} (OpenAI-compatible) one.")
    tools = values.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, str) and t for t in tools):
        add("tools", "tools is a list of stored function names.")
    else:
        for index, name in enumerate(tools):
            if not function_exists(name):
                errors.setdefault(f"tools[{index}]", []).append(f"Unknown function '{name}'.")
    schema = values.get("output_schema")
    if schema is not None:
        if not isinstance(schema, dict):
            add("output_schema", "The output schema is a JSON Schema object.")
        else:
            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as exc:
                add("output_schema", f"Not a valid JSON Schema: {exc.message}.")
    for field, (low, high) in LIMITS.items():
        value = values.get(field)
        if value is None and field in ("max_tokens", "timeout_seconds"):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            add(field, f"{API_NAMES[field]} must be a whole number from {low} to {high}.")
    return errors


@transaction.atomic
def agent_save(*, key: str, agent: Agent | None = None, **values: Any) -> Agent:
    """Create an agent (`agent` None) or change the given fields of `agent`."""
    row = agent or Agent(key=key)
    unknown = set(values).difference(FIELDS)
    if unknown:
        raise TypeError(f"unknown agent fields: {', '.join(sorted(unknown))}")
    for field, value in values.items():
        setattr(row, field, value)
    current = {field: getattr(row, field) for field in FIELDS}
    errors = agent_problems(current)
    if errors:
        first = next(iter(errors))
        raise AgentInvalidError(f"{first}: {errors[first][0]}", fields=errors)
    if row.pk is None:
        row.full_clean()
        row.save()
    else:
        row.full_clean(exclude=["key"])
        row.save()
        Agent.objects.filter(pk=row.pk).update(version=F("version") + 1)
        row.refresh_from_db(fields=["version"])
    return row


def agent_connection(name: str | None) -> Connection | None:
    """The connection named, or AgentInvalidError naming `connection`."""
    if not name:
        return None
    connection = Connection.objects.filter(name=name).first()
    if connection is None:
        raise AgentInvalidError(f"connection: No connection '{name}'.",
                                fields={"connection": [f"No connection '{name}'."]})
    return connection
