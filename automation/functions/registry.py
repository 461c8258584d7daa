"""One registry for everything a function step can call.

A Python function registered with `@function("calculate-total")` receives a
`StepContext` and returns JSON. Built-in actions (`transform`, `entity.update`,
`hubspot.upsert_deal`, …) register the same way and may be used directly by name or
through a Function row that adds config and a connection.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from automation.exceptions import FunctionConfigInvalidError, FunctionNotFoundError

logger = logging.getLogger(__name__)


@dataclass
class StepContext:
    run_id: str
    step_id: str
    attempt: int
    input: Any
    params: dict
    scope: dict
    idempotency_key: str
    entity: Any = None
    connection: Any = None
    logs: list = field(default_factory=list)
    # The idempotency ledger (functions.ledger): the step's scope, the first run of its
    # re-run chain, and whether the operator asked to repeat effects.
    scope_key: str = ""
    effect_origin: str = ""
    repeat_effects: bool = False
    # The step's own config (a function step's `rateLimit` overrides its connection's).
    step_config: dict = field(default_factory=dict)

    def log(self, message: str, **data: Any) -> None:
        self.logs.append({"message": message, **({"data": data} if data else {})})


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    handler: Callable[[StepContext], Any]
    params_schema: dict | None = None
    description: str = ""
    cheap: bool = False
    provider: str | None = None
    check: Callable[[dict], dict[str, list[str]]] | None = None


_registry: dict[str, FunctionSpec] = {}


def function(name: str, *, schema: dict | None = None, description: str = "",
             cheap: bool = False, provider: str | None = None,
             check: Callable[[dict], dict[str, list[str]]] | None = None):
    """Register a Python function (or built-in action) under `name`.

    `cheap` marks local, fast work (no I/O): it may run on a claim whose commit skipped
    the disk flush (store.postgresql.must_flush_before); any other step first makes the
    claim durable, since it may call out. `check(params)` adds what a schema
    cannot say (e.g. expressions that must compile), as `{path under config: [messages]}`;
    it runs when a function is saved and before the step runs.
    """

    def decorator(handler: Callable[[StepContext], Any]):
        doc = description or (handler.__doc__ or "").strip()
        _registry[name] = FunctionSpec(name, handler, schema, doc, cheap, provider, check)
        return handler

    return decorator


def get_action(name: str) -> FunctionSpec:
    try:
        return _registry[name]
    except KeyError:
        message = f"Unknown action '{name}'."
        raise FunctionNotFoundError(message, fields={"action": [message]}) from None


def all_actions() -> dict[str, FunctionSpec]:
    return dict(_registry)


def find_action(name: str) -> FunctionSpec | None:
    """The action registered under `name`, or None (all_actions without the copy: a
    step's policy asks on every step)."""
    return _registry.get(name)


_VALIDATORS: dict[int, tuple[dict, Any]] = {}  # id(schema) -> (schema, its validator)
MOST_VALIDATORS = 256  # schemas built per call (an agent's) must not pile up here


def _validator(schema: dict):
    """Draft202012Validator(schema), built once per schema object: building one cost
    more than checking a step's params with it (docs/performance.md). A validator only
    reads its schema, so one serves every check."""
    from jsonschema import Draft202012Validator

    found = _VALIDATORS.get(id(schema))
    if found is None or found[0] is not schema:
        if len(_VALIDATORS) >= MOST_VALIDATORS:
            _VALIDATORS.clear()
        found = _VALIDATORS[id(schema)] = (schema, Draft202012Validator(schema))
    return found[1]


def validate_params(spec: FunctionSpec, params: Any) -> None:
    """Config that does not fit the action's schema -> 422 naming the field."""
    if spec.params_schema is None:
        return
    errors: dict[str, list[str]] = {}
    for error in _validator(spec.params_schema).iter_errors(params):
        path = ".".join(["config", *[str(p) for p in error.absolute_path]])
        if error.validator == "required":
            path = f"{path}.{error.message.split(chr(39))[1]}"
        errors.setdefault(path, []).append(error.message)
    if not errors and spec.check is not None and isinstance(params, dict):
        for path, problems in spec.check(params).items():
            errors.setdefault(f"config.{path}", []).extend(problems)
    if errors:
        first = next(iter(errors))
        raise FunctionConfigInvalidError(f"{first}: {errors[first][0]}", fields=errors)


def function_exists(name: str) -> bool:
    from automation.models import Function

    return name in _registry or Function.objects.filter(name=name).exists()


def function_params_check(name: str | dict, params: dict) -> dict[str, list[str]]:
    """What the function's own `check` finds in a step's params (merged over a Function
    row's config), for definition validation; unknown names are reported elsewhere.

    For an inline function (`name` is `{name, action, config}`, `params` its config with
    the step's params over it) the action must exist (`action`) and the config fit its
    schema too: there is no Function row whose save checked it."""
    if isinstance(name, dict):
        try:
            spec = get_action(name.get("action"))
        except FunctionNotFoundError as exc:
            return {"action": [exc.message]}
        try:
            validate_params(spec, params)
        except FunctionConfigInvalidError as exc:
            return {path.removeprefix("config."): problems
                    for path, problems in exc.fields.items()}
        return {}
    try:
        spec, merged, _ = resolve_function(name, {"params": params})
    except FunctionNotFoundError:
        return {}
    return spec.check(merged) if spec.check is not None else {}


def resolve_function(name: str | dict, step_config: dict) -> tuple[FunctionSpec, dict, Any]:
    """(spec, params, connection) for a function step.

    A Function row wins over a registered name: admins may wrap a built-in with config.
    Step-level `config.params` are merged over the row's config. An inline function
    (`{name, action, config}`, stored in the definition) is its action with its config.
    """
    from automation.functions.catalog import function_row
    from automation.models import Connection

    if isinstance(name, dict):
        params = {**(name.get("config") or {}), **(step_config.get("params") or {})}
        return get_action(name.get("action")), params, None

    row = function_row(name)
    step_params = step_config.get("params") or {}
    if row is not None:
        connection = (Connection.objects.get(pk=row.connection_id)
                      if row.connection_id is not None else None)
        return get_action(row.action), {**row.fresh_config(), **step_params}, connection
    if name in _registry:
        return _registry[name], step_params, None
    raise FunctionNotFoundError(f"Unknown function '{name}'.")
