"""A function step calls a named function (a built-in action, a registered Python
function or a Function row) with its params and input; its output is the function's."""

from collections.abc import Callable

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
        if not isinstance(name, str) or not name:
            errors.add(f"{path}.function", "A function step names its function.")
        elif not function_exists(name):
            errors.add(f"{path}.function", f"Unknown function '{name}'.")
        config = raw.get("config", {})
        check_int(config, "retries", path, errors, 0, 20)
        check_int(config, "timeout", path, errors, 1, 3_600_000)

    def validate_params(self, raw: dict, path: str, errors: DefinitionErrors,
                        check_params: Callable[[str, dict], dict[str, list[str]]]) -> None:
        params = raw_config(raw).get("params")
        if isinstance(params, dict) and isinstance(raw.get("function"), str):
            for sub, problems in check_params(raw["function"], params).items():
                for problem in problems:
                    errors.add(f"{path}.config.params.{sub}", problem)

    def execute(self, step: Step, runtime: StepRuntime) -> Outcome:
        output = runtime.call_function(step)
        return Outcome("completed", output=output, logs=runtime.logs)

    def is_cheap(self, step: Step, action_is_cheap: Callable[[str], bool]) -> bool:
        """Only a function marked cheap, and only without a time limit of its own."""
        return not step.config.get("timeout") and bool(action_is_cheap(step.raw.get("function")))

    def max_attempts(self, step: Step) -> int:
        return int(step.config.get("retries", 0)) + 1

    def dry_run(self, step: Step, entry: dict, scope: dict, unknown: frozenset):
        entry["function"] = step.raw.get("function")
        return super().dry_run(step, entry, scope, unknown)

    def summary(self, raw: dict) -> str:
        config = raw_config(raw)
        extra = f" · retries {config['retries']}" if config.get("retries") else ""
        return f"{raw.get('function') or '?'}{extra}"
