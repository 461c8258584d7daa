"""A process step runs another process as a sub-process (docs/user-guide/sub-processes.md):
it starts a child run of `config.process` with `config.input` (names mapped to CEL
expressions, as on every step; the step's own input when left out) as its input, on
`config.entity` (a CEL expression giving an entity id; the parent's entity by default),
then waits for it without holding a worker. The child's result is the step's
output; the child's failure (or its cancellation) is the step's error.

`config.version` says which version of the child runs: "pinned" (the default) is the
child's version that was current when the parent's version was saved, so editing the
child does not change a parent until the parent is saved again; "latest" is the child's
current version when the step starts."""

from collections.abc import Callable

from automation.definitions.errors import DefinitionErrors, check_expression, check_int
from automation.definitions.steps.base import Step, StepRuntime, StepType, raw_config
from automation.definitions.steps.outcome import Outcome
from entities.expressions import evaluate

VERSION_POLICIES = ("pinned", "latest")
# How deep sub-processes may nest at run time: a cycle through other processes (A calls
# B calls A) is not refused when saved, it fails here instead of starting runs forever.
MAX_DEPTH = 10


class ProcessStep(StepType):
    name = "process"
    description = "Run another process (config.process) as a sub-process and wait for its result."
    hides_after = frozenset({"result", "steps"})

    def validate(self, raw: dict, path: str, errors: DefinitionErrors, *,
                 function_exists: Callable[[str], bool]) -> None:
        config = raw_config(raw)
        if process_reference(config) is None:
            errors.add(f"{path}.config.process",
                       "A process step names the process to run in config.process "
                       "(its id or its slug).")
        if config.get("version", "pinned") not in VERSION_POLICIES:
            errors.add(f"{path}.config.version",
                       f"version is one of {', '.join(VERSION_POLICIES)}.")
        if "entity" in config:
            check_expression(config["entity"], f"{path}.config.entity", errors)
        check_int(config, "retries", path, errors, 0, 20)

    def validate_references(self, raw: dict, path: str, errors: DefinitionErrors,
                            stored_exists: Callable[[str, str], bool]) -> None:
        reference = process_reference(raw_config(raw))
        if reference is not None and not stored_exists("ApiProcess", reference):
            errors.add(f"{path}.config.process", f"Unknown process '{reference}'.")

    def calls_process(self, raw: dict) -> str | None:
        return process_reference(raw_config(raw))

    def execute(self, step: Step, runtime: StepRuntime) -> Outcome:
        config = step.config
        scope = runtime.scope
        # `input` maps names to expressions, as on every step (checked with the others)
        child_input = ({name: evaluate(source, scope) for name, source in config["input"].items()}
                       if "input" in config else runtime.input)
        entity = evaluate(config["entity"], scope) if "entity" in config else None
        child = runtime.start_process(step, input=child_input, entity=entity)
        runtime.log(f"started sub-process {child['process']} v{child['version']}: "
                    f"execution {child['id']}", executionId=child["id"])
        ended = child_outcome(child)
        if ended is not None:  # a repeated attempt found its child ended already
            ended.logs = runtime.logs
            return ended
        return Outcome("waiting", logs=runtime.logs, state={"childRun": child["id"]})

    def max_attempts(self, step: Step) -> int:
        return int(step.config.get("retries", 0)) + 1

    def time_limit_ms(self, step: Step) -> int | None:
        return None  # the step waits without a worker; starting the child is quick

    def dry_run(self, step: Step, entry: dict, scope: dict, unknown: frozenset):
        entry["process"] = process_reference(step.config)
        return super().dry_run(step, entry, scope, unknown)

    def summary(self, raw: dict) -> str:
        config = raw_config(raw)
        return f"{process_reference(config) or '?'} · {config.get('version', 'pinned')}"


def process_reference(config: dict) -> str | None:
    """The process a step names, as text (an id or a slug); None when it names none."""
    value = config.get("process")
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def child_outcome(child: dict) -> Outcome | None:
    """The parent step's outcome for a child run {id, status, result, error, process}
    that ended; None while it has not."""
    status = child["status"]
    if status == "completed":
        return Outcome("completed", output=child.get("result"))
    if status == "failed":
        error = child.get("error") or {}
        return Outcome.failed(
            f"Sub-process {child['process']} failed: {error.get('message', 'no message')}",
            code="subprocess_failed", retryable=True, executionId=child["id"],
            childError=error)
    if status == "cancelled":
        return Outcome.failed(f"Sub-process {child['process']} was cancelled "
                              f"(execution {child['id']}).",
                              code="subprocess_cancelled", executionId=child["id"])
    return None
