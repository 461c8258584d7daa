"""What happens outside the store when a run ends or a step starts waiting for people.

The store calls these hooks in the transaction that records the change, so whatever a
hook writes (a webhook delivery row) commits with it or not at all. The application
layer registers them at startup (automation.apps); the store never imports it.

A run-end hook may also say when it has nothing to do: for the run at hand, from the run
alone (`idle_for`: true when the hook has nothing to do for it, decided without a query),
or for any run (`idle_when`: a queryset of the rows that need work, or more: while it
is empty the hook has nothing to do). The PostgreSQL store
records a run's last step in one statement only while every hook is idle: `idle_for` is
asked first, and the querysets of the hooks it does not rule out are checked inside that
statement; otherwise it takes the general way, in which the hooks run. A hook that can
answer from the run must say so with `idle_for`: its queryset is then not part of every
run's end (a query over all runs, as "is any child run active", grows with the table).
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import QuerySet


@dataclass(frozen=True)
class RunEndHook:
    name: str
    call: Callable  # (run) -> None, with the run's row lock held
    idle_when: Callable[[str], QuerySet] | None = None  # (run-end event) -> rows that need work
    idle_for: Callable[[object], bool] | None = None  # (run) -> nothing to do for this run


_run_end: dict[str, RunEndHook] = {}
_waiting: dict[str, Callable] = {}


def on_run_end(name: str, call: Callable, *, idle_when: Callable[[str], QuerySet] | None = None,
               idle_for: Callable[[object], bool] | None = None) -> None:
    _run_end[name] = RunEndHook(name, call, idle_when, idle_for)


def on_approval_requested(name: str, call: Callable) -> None:
    _waiting[name] = call


def run_ended(run) -> None:
    for hook in _run_end.values():
        hook.call(run)


def approval_requested(approval) -> None:
    for call in _waiting.values():
        call(approval)


def run_end_hooks() -> list[RunEndHook]:
    return list(_run_end.values())


def runs_ended(runs: list, event: str) -> None:
    """run_ended for runs that ended together with the same `event` (a chunk's group:
    store.grouped), their row locks held: a hook is skipped when it is idle for the
    whole group (`idle_for` every run, or its `idle_when` rows empty, asked once), and
    otherwise called for each run."""
    for hook in _run_end.values():
        if not _idle_for_all(hook, event, runs):
            for run in runs:
                hook.call(run)


def _idle_for_all(hook: RunEndHook, event: str, runs: list) -> bool:
    if hook.idle_for is not None and all(hook.idle_for(run) for run in runs):
        return True
    if hook.idle_when is None:
        return False
    return not hook.idle_when(event).exists()
