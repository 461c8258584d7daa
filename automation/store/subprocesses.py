"""Sub-processes (docs/user-guide/sub-processes.md): a `process` step waits for a child run
and finishes with the child's end.

The child's end reaches its parent step in the transaction that ends the child (a run-end
hook, store.recording.resume_parent, registered in automation.apps): the parent step
completes with the child's result or fails with its error, atomically with the child's
end, so nothing can be lost in between. Locks are taken child first, then parent;
cancelling a parent commits before it cancels its children, so the two never wait for
each other. What a crash can still leave
behind (a parent cancelled, its children not yet) the sweeper repairs (`repair`).
"""

from django.db.models import QuerySet

from automation.definitions.steps.outcome import Outcome
from automation.definitions.steps.process import child_outcome
from automation.models import Run, StepRun

ACTIVE_RUNS = (Run.Status.PENDING, Run.Status.RUNNING, Run.Status.WAITING)


def describe(run: Run) -> dict:
    """A child run as the parent step sees it: {id, process, version, status, result, error}."""
    return {"id": str(run.pk), "process": run.process.slug, "version": run.version.number,
            "status": run.status, "result": run.result, "error": run.error}


def ended_outcome(child_run_id: str) -> Outcome | None:
    """The parent step's outcome if its child run has ended already, else None (read
    under the parent run's row lock: the child's end hook waits for that lock)."""
    child = Run.objects.select_related("process", "version").filter(pk=child_run_id).first()
    if child is None:  # pruned: it ended long ago, and its end was recorded then
        return Outcome.failed(f"The sub-process execution {child_run_id} no longer exists.",
                              code="subprocess_missing")
    return child_outcome(describe(child))


def children_active(event: str) -> QuerySet:
    """The run-end hook's rows that need work: while no child run is active, no run that
    ends has a parent waiting for it (the PostgreSQL store's one-statement record checks
    this inside its statement, store.hooks)."""
    return Run.objects.filter(parent_step_run__isnull=False, status__in=ACTIVE_RUNS)


def is_not_a_child(run: Run) -> bool:
    """The run-end hook has nothing to do for a run that no `process` step started: its
    end resumes no parent (set when the run is written, never changed). The PostgreSQL
    store's one-statement end then skips children_active, a query over every active
    run that a batch of 100,000 made cost 21 ms per run end (docs/performance.md)."""
    return run.parent_step_run_id is None


def active_children(run: Run) -> list[Run]:
    return list(Run.objects.filter(parent_run=run, status__in=ACTIVE_RUNS))


def orphans(limit: int) -> list[Run]:
    """Active child runs whose parent has ended (a crash between a parent's cancel and
    its children's)."""
    return list(Run.objects.filter(status__in=ACTIVE_RUNS, parent_run__isnull=False)
                .exclude(parent_run__status__in=ACTIVE_RUNS)[:limit])


def unresumed(limit: int) -> list[Run]:
    """Ended child runs whose parent step still waits for them: only a child ended by a
    path that skipped the run-end hooks could leave one. (A step waiting on a later
    attempt's child also has the earlier attempts' ended children: they are passed over.)"""
    found = []
    rows = Run.objects.filter(parent_step_run__status=StepRun.Status.WAITING,
                              status__in=Run.FINISHED).select_related(
        "process", "version", "parent_step_run").order_by("finished_at")
    for child in rows.iterator(chunk_size=200):
        if (child.parent_step_run.state or {}).get("childRun") == str(child.pk):
            found.append(child)
            if len(found) >= limit:
                break
    return found
