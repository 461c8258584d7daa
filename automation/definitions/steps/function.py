"""A function step calls a named function (a built-in action, a registered Python
function or a Function row) with its params and input; its output is the function's.

`function` may also be the function itself, inline: `{"name", "action", "config"}`
(docs/user-guide/processes.md#inline-functions). It is stored with the definition
version, so a run always calls what its version says, whatever happens to Function rows.
"""

from collections.abc import Callable
from typing import Any

from automation.connections.limits import rate_limit_problems
from automation.definitions.errors import DefinitionErrors, check_int
from automation.definitions.steps.base import Step, StepRuntime, StepType, raw_config
from automation.definitions.steps.outcome import Outcome


class FunctionStep(StepType):
    name = "function"
    description = "Call a named function with params and input; its output is the step's."
    hides_after = frozenset({"result", "steps"})

    def validate(self, raw: dict, path: str, errors: DefinitionErrors, *,
                 function_exists: Callable[[str], bool]) -> None:
        name = raw.get("function")
        if isinstance(name, dict):
            check_inline(name, f"{path}.function", errors)
        elif not isinstance(name, str) or not name:
            errors.add(f"{path}.function", "A function step names its function, or carries "
                                           "one inline as {name, action, config}.")
        elif not function_exists(name):
            errors.add(f"{path}.function", f"Unknown function '{name}'.")
        config = raw.get("config", {})
        check_int(config, "retries", path, errors, 0, 20)
        check_int(config, "timeout", path, errors, 1, 3_600_000)
        if isinstance(config, dict) and "rateLimit" in config:
            for problem in rate_limit_problems(config["rateLimit"]):
                errors.add(f"{path}.config.rateLimit", problem)

    def validate_params(self, raw: dict, path: str, errors: DefinitionErrors,
                        check_params: Callable[[str, dict], dict[str, list[str]]]) -> None:
        params = raw_config(raw).get("params")
        function = raw.get("function")
        if isinstance(function, dict) and is_inline(function):
            merged = {**function.get("config", {}),
                      **(params if isinstance(params, dict) else {})}
            for sub, problems in check_params(function, merged).items():
                for problem in problems:
                    where = "action" if sub == "action" else f"config.{sub}"
                    errors.add(f"{path}.function.{where}", problem)
        elif isinstance(params, dict) and isinstance(function, str):
            for sub, problems in check_params(function, params).items():
                for problem in problems:
                    errors.add(f"{path}.config.params.{sub}", problem)

    def execute(self, step: Step, runtime: StepRuntime) -> Outcome:
        output = runtime.call_function(step)
        return Outcome("completed", output=output, logs=runtime.logs)

    def is_cheap(self, step: Step, action_is_cheap: Callable[[str], bool]) -> bool:
        """Only a function marked cheap, and only without a time limit of its own."""
        function = step.raw.get("function")
        action = function.get("action") if isinstance(function, dict) else function
        return not step.config.get("timeout") and bool(action_is_cheap(action))

    def max_attempts(self, step: Step) -> int:
        return int(step.config.get("retries", 0)) + 1

    def dry_run(self, step: Step, entry: dict, scope: dict, unknown: frozenset):
        entry["function"] = function_label(step.raw.get("function"))
        return super().dry_run(step, entry, scope, unknown)

    def summary(self, raw: dict) -> str:
        config = raw_config(raw)
        extra = f" · retries {config['retries']}" if config.get("retries") else ""
        return f"{function_label(raw.get('function')) or '?'}{extra}"


INLINE_KEYS = {"name", "action", "config", "description"}


def is_inline(function: Any) -> bool:
    """An inline function with the shape check_inline accepts."""
    return (isinstance(function, dict) and isinstance(function.get("name"), str)
            and isinstance(function.get("action"), str)
            and isinstance(function.get("config", {}), dict))


def check_inline(function: dict, path: str, errors: DefinitionErrors) -> None:
    """The shape only; the action and its config are checked with the registry
    (validate_params, through check_params)."""
    for key in sorted(set(function) - INLINE_KEYS):
        errors.add(f"{path}.{key}", f"Unknown key '{key}'; an inline function has "
                                    f"{', '.join(sorted(INLINE_KEYS))}.")
    if not isinstance(function.get("name"), str) or not function.get("name", "").strip():
        errors.add(f"{path}.name", "An inline function has a name.")
    if not isinstance(function.get("action"), str) or not function.get("action"):
        errors.add(f"{path}.action", "An inline function names its action (e.g. transform).")
    if not isinstance(function.get("config", {}), dict):
        errors.add(f"{path}.config", "config must be an object.")
    if not isinstance(function.get("description", ""), str):
        errors.add(f"{path}.description", "description must be a string.")


def function_label(function: Any) -> str:
    """What a person reads for a step's function: its name (inline ones say so)."""
    if isinstance(function, dict):
        return f"{function.get('name') or '?'} (inline {function.get('action') or '?'})"
    return function if isinstance(function, str) else ""
