"""A waitForEvent step pauses its run until an event of `config.event` arrives for which
`config.condition` (CEL over `event` and the run's scope) holds; its output is that
event. When none comes within `config.timeout` the run goes on to `config.onTimeout`
with {"timedOut": true}. No worker is held meanwhile: the step run is `waiting`, the
event dispatch looks up the runs waiting for its type, and a scheduled wake times it
out (docs/user-guide/waits.md)."""

from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone

from automation.definitions.durations import duration_problem, human_ms, parse_duration_ms
from automation.definitions.errors import DefinitionErrors, check_expression
from automation.definitions.steps.base import DryTarget, Step, StepRuntime, StepType, raw_config
from automation.definitions.steps.outcome import Outcome

MAX_EVENT_TYPE = 100  # EntityEvent.type's length


class WaitForEventStep(StepType):
    name = "waitForEvent"
    description = ("Wait for an event (config.event, config.condition); config.onTimeout "
                   "when none comes within config.timeout.")
    hides_after = frozenset({"result"})  # the event is known only when it comes

    def validate(self, raw: dict, path: str, errors: DefinitionErrors, *,
                 function_exists: Callable[[str], bool]) -> None:
        config = raw_config(raw)
        event = config.get("event")
        if not isinstance(event, str) or not event.strip() or len(event) > MAX_EVENT_TYPE:
            errors.add(f"{path}.config.event", "Name the event type to wait for "
                                               f"(text, at most {MAX_EVENT_TYPE} characters).")
        if "condition" in config:
            check_expression(config["condition"], f"{path}.config.condition", errors)
        problem = duration_problem(config.get("timeout"))
        if problem:
            errors.add(f"{path}.config.timeout", problem)
        if not isinstance(config.get("onTimeout"), str) or not config["onTimeout"]:
            errors.add(f"{path}.config.onTimeout", "Name the step the run goes on to when no "
                                                   "event comes before the timeout.")

    def execute(self, step: Step, runtime: StepRuntime) -> Outcome:
        config, now = step.config, timezone.now()
        due = now + timedelta(milliseconds=parse_duration_ms(config["timeout"]))
        waiting_for = {"kind": "event", "event": config["event"],
                       "condition": config.get("condition") or "", "since": now.isoformat(),
                       "dueAt": due.isoformat()}
        runtime.log(f"waiting for {config['event']} until {due.isoformat()}")
        return Outcome("waiting", logs=runtime.logs, state={"waitingFor": waiting_for})

    def when_due(self, step: Step, step_input) -> Outcome:
        """No event in time: on to config.onTimeout."""
        return Outcome("completed", output={"timedOut": True}, targets=[step.config["onTimeout"]],
                       logs=[{"message": f"no {step.config['event']} event in time: timed out",
                              "at": timezone.now().isoformat()}])

    def when_event(self, step: Step, event: dict) -> Outcome:
        """The event came: it is the step's output, and the run goes on to `next`."""
        return Outcome("completed", output=event,
                       logs=[{"message": f"event {event.get('type')} #{event.get('id')} came",
                              "at": timezone.now().isoformat()}])

    def time_limit_ms(self, step: Step) -> int | None:
        return None  # `timeout` is how long to wait for the event, not a run-time limit

    def dry_run(self, step: Step, entry: dict, scope: dict, unknown: frozenset) -> list[DryTarget]:
        entry["waitsFor"] = self.summary(step.raw)
        # either way is possible: the event comes, or the timeout passes
        return [(target, False) for target in step.next] + self.maybe_targets(step)

    def summary(self, raw: dict) -> str:
        config = raw_config(raw)
        text = f"event {config.get('event', '?')}"
        if config.get("condition"):
            text += f" where {config['condition']}"
        try:
            text += f" · timeout {human_ms(parse_duration_ms(config.get('timeout')))}"
        except ValueError:
            pass
        return text
