"""What happens outside the store when a run ends or a step starts waiting for people.

The store calls these hooks in the transaction that records the change, so whatever a
hook writes (a webhook delivery row) commits with it or not at all. The application
layer registers them at startup (automation.apps); the store never imports it.

A run-end hook may also say when it has nothing to do (`idle_when`: a queryset that is
empty exactly then). The PostgreSQL store records a run's last step in one statement
only while every hook's queryset is empty, checked inside that statement; otherwise it
takes the general way, in which the hooks run.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import QuerySet


@dataclass(frozen=True)
class RunEndHook:
    name: str
    call: Callable  # (run) -> None, with the run's row lock held
    idle_when: Callable[[str], QuerySet] | None = None  # (run-end event) -> rows that need work


_run_end: dict[str, RunEndHook] = {}
_waiting: dict[str, Callable] = {}


def on_run_end(name: str, call: Callable, *, idle_when: Callable[[str], QuerySet] | None = None
               ) -> None:
    _run_end[name] = RunEndHook(name, call, idle_when)


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
