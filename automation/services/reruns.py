"""Re-running a finished run from any of its steps, and retrying a failed one (the same
thing from the failed step). docs/user-guide/operating-runs.md says what an operator
sees; this module decides what a re-run is:

- a NEW run of the same process, entity, input and parameters, on the pinned version
  or the latest one, linked to the run it re-runs (`rerun_of`, and back: `reruns`);
- the completed steps that do not come after the chosen step are kept as they were
  (copied, not run again), so the chosen step and everything after it see the same
  `steps` and `result` as before;
- the chosen step starts with its old input, or the operator's edited input;
- every external effect goes through the idempotency ledger (functions.ledger) keyed on
  the first run of the chain, so an effect already made is served from the ledger, not
  made again, unless the operator asks to repeat effects.
"""

import json
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from automation.exceptions import AutomationError, RunStateError
from automation.models import Effect, ProcessVersion, Run, StepRun
from automation.services.payloads import json_depth_exceeds
from automation.store import get_store
from automation.store.graphs import graph_for
from automation.store.state import StepState

VERSIONS = ("pinned", "latest")
UNSET: Any = object()


class RerunInvalidError(AutomationError):
    code = "invalid_rerun"
    http_status = 422
    default_message = "The re-run cannot start from there."


@dataclass
class RerunPlan:
    """What a re-run will do, for the preview and for run_rerun."""

    run: Run
    version: ProcessVersion
    from_step: str
    input: Any
    input_edited: bool
    repeat_effects: bool
    runs: list[str] = field(default_factory=list)  # the steps that may run, in order
    kept: list[str] = field(default_factory=list)  # completed steps kept as they were
    effects: list[dict] = field(default_factory=list)  # recorded effects and their fate
    copies: list[StepRun] = field(default_factory=list)
    restart: list[tuple[str, Any]] = field(default_factory=list)  # (step, its old input)

    def as_json(self) -> dict:
        return {"runId": str(self.run.pk), "fromStep": self.from_step,
                "version": {"id": self.version.pk, "number": self.version.number,
                            "pinned": self.version.pk == self.run.version_id},
                "input": self.input, "inputEdited": self.input_edited,
                "repeatEffects": self.repeat_effects, "steps": self.runs, "kept": self.kept,
                "effects": self.effects}


def origin_of(run: Run) -> str:
    """The first run of a re-run chain: the ledger's keys are made on it."""
    return (run.trigger or {}).get("origin") or str(run.pk)


def stopped_by_failure(run: Run) -> tuple[str, ...]:
    """The steps the failure cancelled (branches running beside the failed one)."""
    return tuple(StepRun.objects.filter(run=run, status=StepRun.Status.CANCELLED, scope="",
                                        state__stopped_by="failure")
                 .values_list("step_id", flat=True))


def failed_step(run: Run) -> str:
    """The step a failed run failed at (the step a retry starts from)."""
    if run.status != Run.Status.FAILED:
        raise RunStateError(f"Only a failed run can be retried; this one is {run.status}.")
    step = (run.error or {}).get("step")
    if not step:
        failed = [s for s in StepRun.objects.filter(run=run, status=StepRun.Status.FAILED,
                                                    scope="")
                  if not StepState.from_json(s.state).handled]
        step = failed[0].step_id if failed else None
    if not step:
        raise RunStateError("The run has no failed step to retry.")
    return step


def rerun_plan(*, run: Run, from_step: str, input: Any = UNSET, version: str = "pinned",
               repeat_effects: bool = False, describe: bool = True,
               restart: tuple[str, ...] = ()) -> RerunPlan:
    """Check a re-run and say what it will do; writes nothing (the preview). Without
    `describe` the recorded effects are not listed (a start needs only the rows).
    `restart`: more steps that start again with their old input (a retry's branches
    that the failure stopped)."""
    if not run.is_finished:
        raise RunStateError(f"Only a finished run can be re-run; this one is {run.status}.")
    if version not in VERSIONS:
        raise RerunInvalidError("version must be 'pinned' or 'latest'.",
                                fields={"version": ["Use 'pinned' or 'latest'."]})
    target = run.version if version == "pinned" else run.process.current_version
    if target is None:
        raise RerunInvalidError("The process has no version to run.")
    graph = graph_for(target.pk)
    if not isinstance(from_step, str) or from_step not in graph.steps:
        raise RerunInvalidError(
            f"fromStep: no step {from_step!r} in version {target.number}.",
            fields={"fromStep": [f"Not a step of version {target.number}: "
                                 f"use one of {', '.join(graph.steps)}."]})
    if graph.owning_loop(from_step):
        raise RerunInvalidError(
            f"fromStep: '{from_step}' is inside a loop's body; re-run from the loop.",
            fields={"fromStep": ["Pick the loop itself, or a step outside the loop."]})
    restart = tuple(sid for sid in restart if sid in graph.steps and sid != from_step
                    and not graph.owning_loop(sid))
    after = {from_step, *graph.reach[from_step]}
    for sid in restart:
        after |= {sid, *graph.reach[sid]}
    if input is not UNSET:
        _check_input(input)
    old = list(StepRun.objects.filter(run=run).order_by("id"))
    start = next((s for s in old if s.step_id == from_step and not s.scope), None)
    step_input = input if input is not UNSET else (start.input if start is not None else {})
    kept = [s for s in old if s.status == StepRun.Status.COMPLETED
            and s.step_id in graph.steps and s.step_id not in after
            and not (s.scope and s.scope.split("[", 1)[0] in after)]
    plan = RerunPlan(run=run, version=target, from_step=from_step, input=step_input,
                     input_edited=input is not UNSET, repeat_effects=bool(repeat_effects))
    plan.restart = [(sid, next((s.input for s in old if s.step_id == sid and not s.scope), {}))
                    for sid in restart if sid not in graph.reach[from_step]]
    plan.kept = [s.step_id + (f"@{s.scope}" if s.scope else "") for s in kept]
    plan.runs = [sid for sid in graph.steps if sid in after]
    plan.copies = [_copy(s, run) for s in kept]
    plan.copies += _joins_waiting(graph, old, after, starts={from_step, *restart})
    fate = "repeat" if repeat_effects else "skip if unchanged"
    recorded = Effect.objects.filter(key__startswith=f"{origin_of(run)}:") if describe else []
    for effect in recorded:
        plan.effects.append({
            "step": effect.step_id, "scope": effect.scope, "action": effect.action,
            "key": effect.key, "fate": fate if effect.step_id in after else "kept",
            "calls": effect.calls})
    return plan


def run_rerun(*, run: Run, from_step: str, input: Any = UNSET, version: str = "pinned",
              repeat_effects: bool = False, user=None, batch=None,
              idempotency_key: str | None = None, reason: str = "rerun",
              restart: tuple[str, ...] = ()) -> Run:
    """Start the re-run the plan describes; returns the new run (its `rerun_of` is `run`).
    With an idempotency key already taken, returns the run that took it."""
    plan = rerun_plan(run=run, from_step=from_step, input=input, version=version,
                      repeat_effects=repeat_effects, describe=False, restart=restart)
    graph = graph_for(plan.version.pk)
    trigger = {"type": reason, "rerunOf": str(run.pk), "origin": origin_of(run),
               "fromStep": from_step, "version": version,
               "repeatEffects": plan.repeat_effects, "inputEdited": plan.input_edited,
               "event": (run.trigger or {}).get("event") or {}}
    if batch is not None:
        trigger["batchId"] = str(batch.pk)
    new = Run(process=run.process, version=plan.version, trigger=trigger, input=run.input,
              parameters=run.parameters, entity_id=run.entity_id, event_id=run.event_id,
              batch=batch if batch is not None else run.batch, rerun_of=run,
              idempotency_key=idempotency_key, created_by=user, status=Run.Status.PENDING,
              started_at=timezone.now(),
              # a batch of re-runs may set its own (docs/user-guide/priority.md)
              priority=(batch.priority if batch is not None and batch.priority
                        else run.priority))
    first = graph.steps[from_step]
    logs = [{"message": f"{reason} of run {run.pk} from this step"
             + (" with input edited by staff" if plan.input_edited else "")}]
    step_run = StepRun(run=new, step_id=first.id, step_type=first.type, input=plan.input,
                       logs=logs)
    others = [StepRun(step_id=sid, step_type=graph.steps[sid].type, input=old_input,
                      logs=[{"message": f"{reason}: stopped by the failure of run {run.pk}, "
                                        f"started again"}])
              for sid, old_input in plan.restart]
    if get_store().start_rerun(new, plan.copies, step_run, first,
                               also=[(s, graph.steps[s.step_id]) for s in others]):
        return new
    return Run.objects.get(idempotency_key=idempotency_key)


def _copy(step_run: StepRun, run: Run) -> StepRun:
    return StepRun(step_id=step_run.step_id, step_type=step_run.step_type, scope=step_run.scope,
                   index=step_run.index, status=StepRun.Status.COMPLETED,
                   attempt=step_run.attempt, input=step_run.input, output=step_run.output,
                   logs=[*step_run.logs, {"message": f"kept from run {run.pk} (not run again)"}],
                   state=step_run.state, started_at=step_run.started_at,
                   finished_at=step_run.finished_at, duration_ms=step_run.duration_ms)


def _joins_waiting(graph, old: list[StepRun], after: set[str], *,
                   starts: set[str]) -> list[StepRun]:
    """A join after the chosen step that branches the re-run does not run again had
    reached (a parallel branch kept as it was): written waiting, with what those branches
    brought it, so it fires once the re-run's own branches arrive. A merge of exclusive
    branches brought nothing from the branch not taken, and needs no row."""
    rows = []
    for sid in sorted(after - starts):  # a step the re-run starts at gets no join row
        outside = graph.predecessors.get(sid, set()) - after
        if not graph.is_join(sid) or not outside:
            continue
        previous = next((s for s in old if s.step_id == sid and not s.scope), None)
        if previous is None:
            continue
        state = StepState.from_json(previous.state)
        brought = state.arrivals if state.join else previous.input
        arrivals = {k: v for k, v in (brought or {}).items() if k in outside} \
            if isinstance(brought, dict) else {}
        if arrivals:
            rows.append(StepRun(step_id=sid, step_type=previous.step_type,
                                status=StepRun.Status.WAITING,
                                state=StepState(join=True, arrivals=arrivals).to_json(),
                                logs=[{"message": "kept the arrivals of branches not run again: "
                                                  + ", ".join(sorted(arrivals))}]))
    return rows


def _check_input(value: Any) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise RerunInvalidError("input must be JSON.",
                                fields={"input": ["Not a JSON value."]}) from None
    if json_depth_exceeds(value):
        raise RerunInvalidError("input nests too deep.", fields={"input": ["Too deeply nested."]})
