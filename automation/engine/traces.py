"""The spans of runs and steps (docs/operating.md#tracing), through integrations.tracing.

A step's span is current while its type runs, so an outbound call it makes carries the
run's trace (the connectors' shared session adds `traceparent`). A run's span is written
once the run has ended, with the ids its steps already named as their parent. Nothing
here reads or writes the database beyond a version's number, once per version, and only
for a run that has a trace.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

import integrations.tracing as tracing
from automation.definitions import Step
from automation.models import Run, StepRun
from automation.store.graphs import version_number

logger = logging.getLogger(__name__)


def run_attributes(run: Run) -> dict:
    attributes = {"entityflow.process": run.process.slug,
                  "entityflow.process.version": version_number(run.version_id),
                  "entityflow.run.id": str(run.pk)}
    if run.entity_id is not None:
        attributes["entityflow.entity"] = str(run.entity_id)
    return attributes


@contextmanager
def step_span(run: Run, step_run: StepRun, step: Step) -> Iterator[object | None]:
    """The span of one execution of one step, a child of its run's span; yields None
    when tracing is off or the run has no trace (set the outcome with `step_outcome`)."""
    if not (run.traceparent and tracing.enabled()):
        yield None
        return
    attributes = {**run_attributes(run), "entityflow.step": step.id,
                  "entityflow.step.type": step.type, "entityflow.attempt": step_run.attempt}
    if step_run.scope:
        attributes["entityflow.step.scope"] = step_run.scope
    with tracing.span_in(run.traceparent, f"step {step.id}", attributes) as span:
        yield span


def step_outcome(span, kind: str, error: dict | None = None) -> None:
    if span is None:
        return
    span.set_attribute("entityflow.outcome", kind)
    if kind == "failed":
        message = (error or {}).get("code") or "failed"
        tracing.set_error(span, message)


def run_ended(run: Run) -> None:
    """Write the run's span (from its creation to its end) once it has finished; once per
    run object, whichever of the paths below sees the end first."""
    if not (run.traceparent and run.is_finished and tracing.enabled()) or getattr(
            run, "_span_written", False):
        return
    run._span_written = True
    try:
        _write_run_span(run)
    except Exception:  # a trace is an aid: it must never fail or undo the run it follows
        logger.exception("run %s: could not write its span", run.pk)


def run_end_hook(run: Run) -> None:
    """The store's run-end hook (store.hooks), for a run ended anywhere (a step, a person's
    decision): its span is written after the commit, when the end is certain. A run the
    PostgreSQL store ends in one statement skips the hooks; the executor writes that one."""
    if run.traceparent and tracing.enabled():
        transaction.on_commit(lambda: run_ended(run))


def spans_need_no_rows(event: str) -> QuerySet:
    """What the hook needs rows for: nothing (a span is no row), so a run's end is never
    kept from the PostgreSQL store's one statement on its account."""
    return Run.objects.filter(pk__isnull=True)


def _write_run_span(run: Run) -> None:
    tracing.write_span(run.traceparent, run.trace_parent_id, f"run {run.process.slug}",
                       {**run_attributes(run), "entityflow.outcome": run.status},
                       start=run.created_at, end=run.finished_at or timezone.now(),
                       error=run.status == Run.Status.FAILED)
