"""A claimed step run and the worker's offer to continue a run's steps itself.

These replace attributes once attached to model instances on the fly: what the claim
knows (`reclaimed`, the `steps` its scope holds) travels in a `Claim`, and whether the
worker takes a successor itself is asked of its `Handover` (automation.engine.context).
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import connections, router
from django.utils import timezone

from automation.definitions import Step
from automation.models import StepRun
from automation.store.policy import may_continue


@dataclass
class Claim:
    step_run: StepRun  # as claimed, with its run and process loaded
    reclaimed: bool = False  # the previous holder's lease ran out: its attempt never reported
    known_steps: dict[str, Any] | None = None  # `steps` of its scope, when its predecessor knew
    seen_steps: dict[str, Any] | None = None  # `steps` as the step saw them while it ran
    # Written claimed in its predecessor's record, an ordinary (flushed) commit: nothing
    # of it can be forgotten, so it needs no commit of its own before it calls out.
    durable: bool = False


class Handover(Protocol):
    """A worker that continues a run's steps itself, each committed before it runs."""

    def accept(self) -> bool:
        """Take one more step here (False: the bound is reached, ring for it instead)."""

    def run_here(self, claim: Claim) -> None:
        """Called after the commit that wrote `claim`'s row: queue it on this worker."""


def continuation_claim_fields(handover: Handover | None, step: Step) -> dict | None:
    """Claim fields for a new step row the worker will run itself, or None.

    One rule for every step type (policy.may_continue): the one successor of the step
    just recorded is written already claimed (with a lease) in the transaction that
    records its predecessor: no claim query and no broker round trip, and if the worker
    dies before running it the lease runs out and the sweeper hands it to another
    worker. Fan-out branches are never offered here (store.successors.follow). Only a
    row whose transaction commits right away can be handed over (the outermost
    transaction, or a statement on its own); inside an enclosing transaction the
    hand-over would wait for a commit that may come too late.
    """
    if (handover is None or not may_continue(step) or not _outermost_transaction()
            or not handover.accept()):
        return None
    now = timezone.now()
    return {"status": StepRun.Status.RUNNING, "claim": uuid.uuid4(), "attempt": 1,
            "started_at": now,
            "lease_expires_at": now + timedelta(seconds=settings.ENTITYFLOW_STEP_LEASE_SECONDS)}


def _outermost_transaction() -> bool:
    return len(connections[router.db_for_write(StepRun)].atomic_blocks) <= 1
