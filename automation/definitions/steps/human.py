"""A human step waits for approvals: `requiredApprovals` distinct people of the listed
approvers (users, emails or group:<name>), or `rejectQuorum` rejections. Its `timeout`
is the approval deadline, after which the run goes on to `config.onTimeout`; it is not
a limit on how long the step may run. `form` (a JSON Schema) is what the person enters,
`fields` the entity fields the decision is bound to; `remindAfter`, `escalateAfter` and
`escalateTo` nudge people before the deadline (docs/user-guide/human-tasks.md)."""

from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from automation.definitions.durations import human_ms
from automation.definitions.errors import DefinitionErrors, check_int
from automation.definitions.steps.base import Step, StepRuntime, StepType, raw_config
from automation.definitions.steps.outcome import Outcome


class HumanStep(StepType):
    name = "human"
    description = "Wait for approvals from people; config.onTimeout when the deadline passes."
    waits_for_people = True
    hides_after = frozenset({"result", "steps"})

    def validate(self, raw: dict, path: str, errors: DefinitionErrors, *,
                 function_exists: Callable[[str], bool]) -> None:
        config = raw.get("config", {})
        people = config.get("approvers") or config.get("reviewers")
        if not isinstance(people, list) or not people or not all(
                isinstance(p, str) for p in people):
            errors.add(f"{path}.config.approvers",
                       "List at least one approver (user, email or group:<name>).")
        check_int(config, "requiredApprovals", path, errors, 1, 100)
        check_int(config, "rejectQuorum", path, errors, 1, 100)
        year = 365 * 86_400_000
        for key in ("timeout", "remindAfter", "escalateAfter"):
            check_int(config, key, path, errors, 1, year)
        check_int(config, "linkExpiry", path, errors, 60_000, 30 * 86_400_000)
        timeout = config.get("timeout")
        for key in ("remindAfter", "escalateAfter"):
            value = config.get(key)
            if isinstance(value, int) and isinstance(timeout, int) and value >= timeout:
                errors.add(f"{path}.config.{key}", f"{key} must come before the timeout.")
        if "escalateAfter" in config and not _strings(config.get("escalateTo")):
            errors.add(f"{path}.config.escalateTo",
                       "escalateAfter needs escalateTo: the people (user, email or group:<name>).")
        elif "escalateTo" in config and not _strings(config.get("escalateTo")):
            errors.add(f"{path}.config.escalateTo",
                       "List at least one person (user, email or group:<name>).")
        if "fields" in config and (not _strings(config.get("fields"))):
            errors.add(f"{path}.config.fields", "List the entity data fields the decision covers.")
        if "form" in config:
            for sub, message in form_problems(config["form"]):
                errors.add(f"{path}.config.form{sub}", message)

    def execute(self, step: Step, runtime: StepRuntime) -> Outcome:
        config = step.config
        timeout_ms = config.get("timeout")
        deadline = timezone.now() + timedelta(milliseconds=timeout_ms) if timeout_ms else None
        state = {
            "approvers": _approvers(config),
            "requiredApprovals": config.get("requiredApprovals", 1),
            "deadline": deadline.isoformat() if deadline else None,
        }
        runtime.log(f"waiting for {state['requiredApprovals']} approval(s) from "
                    f"{', '.join(state['approvers'])}")
        return Outcome("waiting", logs=runtime.logs, state=state)

    def time_limit_ms(self, step: Step) -> int | None:
        return None  # `timeout` is the approval deadline

    def dry_run(self, step: Step, entry: dict, scope: dict, unknown: frozenset):
        entry["approvers"] = _approvers(step.config)
        return super().dry_run(step, entry, scope, unknown)

    def summary(self, raw: dict) -> str:
        config = raw_config(raw)
        people = _approvers(config)
        need = config.get("requiredApprovals", 1)
        wait = human_ms(config.get("timeout"))
        return f"{need} of {', '.join(map(str, people)) or '?'}" + (
            f" · timeout {wait}" if wait else ""
        ) + (" · form" if config.get("form") else "")


def _strings(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


RENDERED_TYPES = ("string", "number", "integer", "boolean")


def form_problems(form) -> list[tuple[str, str]]:
    """(sub-path, message) for what is wrong with a form schema; [] when it is usable."""
    if not isinstance(form, dict):
        return [("", "form must be a JSON Schema object.")]
    try:
        Draft202012Validator.check_schema(form)
    except SchemaError as exc:
        return [("", f"form is not a valid JSON Schema: {exc.message}")]
    if form.get("type") != "object" or not isinstance(form.get("properties"), dict):
        return [("", 'form must be {"type": "object", "properties": {...}}.')]
    problems = []
    for name, prop in form["properties"].items():
        if not isinstance(prop, dict) or prop.get("type") not in RENDERED_TYPES:
            problems.append((f".properties.{name}",
                             f"{name} must have a type of {', '.join(RENDERED_TYPES)}."))
    for name in form.get("required") or []:
        if name not in form["properties"]:
            problems.append((".required", f"{name} is required but not among the properties."))
    return problems


def _approvers(config: dict) -> list:
    return config.get("approvers") or config.get("reviewers") or []
