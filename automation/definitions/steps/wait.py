"""A wait step pauses its run for a while (`config.for`, a duration) or until a time
(`config.until`, an expression giving a timestamp, read in the process's time zone)
without holding a worker: the step run is `waiting` with a due time, and a scheduled
wake (the sweeper as a backstop) goes on when it is due (docs/user-guide/waits.md)."""

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from automation.definitions.durations import duration_problem, human_ms, parse_duration_ms
from automation.definitions.errors import DefinitionErrors, check_expression
from automation.definitions.steps.base import DryTarget, Step, StepRuntime, StepType, raw_config
from automation.definitions.steps.outcome import Outcome
from entities.exceptions import ExpressionEvaluationError
from entities.expressions import evaluate


class WaitStep(StepType):
    name = "wait"
    description = ("Wait for a duration (config.for) or until a time (config.until), "
                   "holding no worker.")

    def validate(self, raw: dict, path: str, errors: DefinitionErrors, *,
                 function_exists: Callable[[str], bool]) -> None:
        config = raw_config(raw)
        given = [key for key in ("for", "until") if key in config]
        if len(given) != 1:
            errors.add(f"{path}.config", 'Give either config.for (a duration such as "2s") or '
                                         "config.until (an expression giving a timestamp).")
            return
        if "for" in config:
            problem = duration_problem(config["for"])
            if problem:
                errors.add(f"{path}.config.for", problem)
        else:
            check_expression(config["until"], f"{path}.config.until", errors)

    def execute(self, step: Step, runtime: StepRuntime) -> Outcome:
        config = step.config
        if "for" in config:
            due = timezone.now() + timedelta(milliseconds=parse_duration_ms(config["for"]))
            waiting_for = {"kind": "time", "for": config["for"]}
        else:
            due = timestamp_in_zone(evaluate(config["until"], runtime.scope), step.zone,
                                    source=config["until"])
            waiting_for = {"kind": "time", "until": config["until"]}
        waiting_for["dueAt"] = due.isoformat()
        runtime.log(f"waiting until {due.isoformat()}")
        return Outcome("waiting", logs=runtime.logs, state={"waitingFor": waiting_for})

    def when_due(self, step: Step, step_input) -> Outcome:
        """Done waiting: the step hands its input on, as if it had not been there."""
        return Outcome("completed", output=step_input,
                       logs=[{"message": "waited", "at": timezone.now().isoformat()}])

    def time_limit_ms(self, step: Step) -> int | None:
        return None  # waiting is not running: no worker holds the step meanwhile

    def dry_run(self, step: Step, entry: dict, scope: dict, unknown: frozenset) -> list[DryTarget]:
        entry["waitsFor"] = self.summary(step.raw)
        return super().dry_run(step, entry, scope, unknown)

    def summary(self, raw: dict) -> str:
        config = raw_config(raw)
        if "for" in config:
            try:
                return f"wait {human_ms(parse_duration_ms(config['for']))}"
            except ValueError:
                return f"wait {config['for']}"
        return f"wait until {config.get('until', '?')}"


def timestamp_in_zone(value, zone_name: str | None, *, source: str) -> datetime:
    """What an `until` expression gave as an aware datetime: a CEL timestamp, or text in
    ISO 8601; a time without an offset is read in the process's time zone."""
    moment = value if isinstance(value, datetime) else (
        parse_datetime(value) if isinstance(value, str) else None)
    if moment is None:
        raise ExpressionEvaluationError(
            f"config.until must give a timestamp (such as timestamp('2030-01-01T09:00:00Z') "
            f"or '2030-01-01T09:00'), got {value!r} (expression: {source})")
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=ZoneInfo(zone_name or settings.TIME_ZONE))
    return moment
