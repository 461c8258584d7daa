"""Writes the API needs that no other service covers yet: cases, parameter sets,
functions, and ending a webhook subscription (creating one is services.webhooks')."""

import secrets as random_secrets
from typing import Any

from django.db import transaction
from django.db.models import ProtectedError
from jsonschema import Draft202012Validator

from automation.exceptions import DefinitionInvalidError, FunctionConfigInvalidError, RunStateError
from automation.functions.registry import get_action, validate_params
from automation.models import (
    Agent,
    ApiProcess,
    Connection,
    Function,
    Parameters,
    WebhookSubscription,
)
from entities.models import Entity, EntityType
from entities.services import entity_create

CASE_TYPE = "case"
CASE_FIELDS = ("firstName", "lastName", "personalNumber", "email", "phone", "companyName",
               "companyNumber", "companyAddress")
WEBHOOK_EVENTS = ("workflow.completed", "workflow.failed", "approval.requested",
                  "approval.reminded", "approval.escalated", "process.paused", "*")


def case_create(*, data: dict) -> Entity:
    """A Case entity with a generated reference (CASE-<10 hex digits>)."""
    case_type = EntityType.objects.get(key=CASE_TYPE)
    reference = f"CASE-{random_secrets.token_hex(5).upper()}"
    return entity_create(entity_type=case_type, reference=reference, data=data)


def parameters_validate(*, process: ApiProcess, parameters: dict) -> None:
    """The parameters against the process's parameters JSON Schema, if it has one: a 422
    naming each failing path (`parameters.amount`), nothing stored."""
    schema = process.parameters_schema
    if schema is None:
        return
    errors: dict[str, list[str]] = {}
    try:
        for error in Draft202012Validator(schema).iter_errors(parameters):
            path = ".".join(str(p) for p in error.absolute_path)
            errors.setdefault(f"parameters.{path}" if path else "parameters",
                              []).append(error.message)
    except Exception as exc:  # e.g. a $ref to a document that is not there
        message = f"The parameters schema of '{process.slug}' cannot be applied: {exc}"
        raise DefinitionInvalidError(message, fields={"parameters": [message]}) from exc
    if errors:
        first = next(iter(errors))
        raise DefinitionInvalidError(f"{first}: {errors[first][0]}", fields=errors)


@transaction.atomic
def parameters_create(*, process: ApiProcess, parameters: dict) -> Parameters:
    parameters_validate(process=process, parameters=parameters)
    row = Parameters(process=process, parameters=parameters)
    row.full_clean()
    row.save()
    return row


def function_validate(*, action: str, config: dict, connection: Connection | None) -> None:
    """Unknown action -> 422 naming `action`; config that does not fit -> `config.<x>`."""
    spec = get_action(action)
    validate_params(spec, config)
    if connection is not None and spec.provider and connection.provider != spec.provider:
        message = (f"'{action}' needs a {spec.provider} connection; "
                   f"'{connection.name}' is {connection.provider}.")
        raise FunctionConfigInvalidError(message, fields={"connection": [message]})


def schema_problem(schema: Any) -> str | None:
    """Why `schema` is not a JSON Schema object (None: it is one)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(schema, dict):
        return "A JSON Schema object is expected."
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return f"Not a valid JSON Schema: {exc.message}."
    return None


@transaction.atomic
def function_save(*, name: str, action: str, config: dict, connection: Connection | None = None,
                  description: str = "", function: Function | None = None,
                  params_schema: dict | None = None) -> Function:
    """Create a function, or replace every field of `function`. `params_schema`: the JSON
    Schema of the arguments an agent passes when it calls the function as a tool."""
    function_validate(action=action, config=config, connection=connection)
    if params_schema is not None:
        problem = schema_problem(params_schema)
        if problem:
            raise FunctionConfigInvalidError(f"paramsSchema: {problem}",
                                             fields={"paramsSchema": [problem]})
    row = function or Function(name=name)
    row.action, row.config, row.params_schema = action, config, params_schema
    row.connection, row.description = connection, description
    row.full_clean()
    row.save()
    return row


def processes_using_function(name: str) -> list[str]:
    """Slugs of enabled processes whose current version calls `name` (in a step, or as a
    tool an agent step lists)."""
    used = []
    for process in ApiProcess.objects.filter(enabled=True).select_related("current_version"):
        steps = [s for s in process.definition.get("steps", []) if isinstance(s, dict)]
        if any(step.get("function") == name or name in _listed_tools(step) for step in steps):
            used.append(process.slug)
    return used


def _listed_tools(step: dict) -> list:
    tools = step.get("config", {}).get("tools") if isinstance(step.get("config"), dict) else None
    return tools if isinstance(tools, list) else []


@transaction.atomic
def function_delete(*, function: Function) -> None:
    used = processes_using_function(function.name)
    if used:
        raise RunStateError(f"'{function.name}' is used by enabled processes: {', '.join(used)}.")
    agents = [a.key for a in Agent.objects.all() if function.name in (a.tools or [])]
    if agents:
        raise RunStateError(f"'{function.name}' is a tool of agents: {', '.join(agents)}.")
    try:
        function.delete()
    except ProtectedError as exc:
        raise RunStateError(f"'{function.name}' is still referenced.") from exc


@transaction.atomic
def webhook_subscription_delete(*, subscription: WebhookSubscription) -> None:
    """Stop deliveries but keep the row, so its delivery log stays readable."""
    subscription.active = False
    subscription.save(update_fields=["active"])
