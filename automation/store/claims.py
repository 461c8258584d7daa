"""A claimed step run and the worker's offer to run cheap successors itself.

These replace attributes once attached to model instances on the fly: what the claim
knows (`reclaimed`, the `steps` its scope holds) travels in a `Claim`, and whether the
worker takes a successor inline is asked of its `Handover` (automation.engine.context).
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import connections, router
from django.utils import timezone

from automation.models import StepRun


@dataclass
class Claim:
    step_run: StepRun  # as claimed, with its run and process loaded
    reclaimed: bool = False  # the previous holder's lease ran out: its attempt never reported
    known_steps: dict[str, Any] | None = None  # `steps` of its scope, when its predecessor knew
    seen_steps: dict[str, Any] | None = None  # `steps` as the step saw them while it ran


class Handover(Protocol):
    """A worker that may run cheap successors itself, each committed before it runs."""

    def accept(self) -> bool:
        """Take one more step inline (False: budget spent, ring for it instead)."""

    def run_here(self, claim: Claim) -> None:
        """Called after the commit that wrote `claim`'s row: queue it on this worker."""


def inline_claim_fields(handover: Handover | None, cheap: bool) -> dict | None:
    """Claim fields for a new step row the worker will run itself, or None.

    The row is written already claimed (with a lease), in the transaction that records
    its predecessor: no claim query and no queue round trip, and if the worker dies
    before running it the lease runs out and the sweeper hands it to another worker.
    Only a row whose transaction commits right away can be handed over (the outermost
    transaction, or a statement on its own); inside an enclosing transaction the
    hand-over would wait for a commit that may come too late.
    """
    if handover is None or not cheap or not _outermost_transaction() or not handover.accept():
        return None
    now = timezone.now()
    return {"status": StepRun.Status.RUNNING, "claim": uuid.uuid4(), "attempt": 1,
            "started_at": now,
            "lease_expires_at": now + timedelta(seconds=settings.ENTITYFLOW_STEP_LEASE_SECONDS)}


def _outermost_transaction() -> bool:
    return len(connections[router.db_for_write(StepRun)].atomic_blocks) <= 1
