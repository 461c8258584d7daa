"""A human step waits for approvals: `requiredApprovals` of the listed approvers (users,
emails or group:<name>). Its `timeout` is the approval deadline, after which the run
goes on to `config.onTimeout`; it is not a limit on how long the step may run."""

from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone

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
        check_int(config, "timeout", path, errors, 1, 365 * 86_400_000)

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
        )


def _approvers(config: dict) -> list:
    return config.get("approvers") or config.get("reviewers") or []
