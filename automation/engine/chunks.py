"""A chunk doorbell's task: the first steps of some of a batch chunk's runs, run one
after another in one task instead of a broker round trip each (docs/architecture.md,
"Chunk doorbells").

Each step is executed as its own doorbell would have it (the claim decides, a step
already taken or finished is skipped, a paused process holds it, its run continues
within the continuation bound), so the history is the same. Two things are done for the
chunk as a whole (docs/performance.md, "Batches done"):

- its steps are claimed together, in one statement (store.RunStore.claim_group), once
  the first step has shown what the chunk's steps are;
- steps with no outside effect (cheap, no time limit, nothing to continue into) are
  recorded together with their runs' ends in one transaction at the end of the task
  (store.grouped), instead of one commit each. Until then they are `running` under
  this worker's lease: a worker killed before that commit leaves them to the sweeper,
  and running such a step again shows nothing twice outside. Any other step is run and
  recorded on its own, as before, on a claim made durable before it runs.

Bounded like a continued run: after ENTITYFLOW_CONTINUE_MAX_MS the task records what it
ran, gives back the claims it has not begun and rings one doorbell for those steps on
the same priority's queue, and gives its worker back; it does the same when a doorbell
of higher priority is waiting, in the broker or taken from it by a worker's pusher and
not begun (store.queues). The broker is asked before the chunk's second step (before its
group claim), then every
ENTITYFLOW_PRIORITY_CHECK_MS of the task's steps, not before each step: asked before
each one it was a third of a cheap step's CPU on the ORM broker (a query on the queue's
table per step; docs/performance.md, "Batches done on SQLite"), so a batch keeps a high
run waiting for at most that long plus the step being run, per worker
(docs/user-guide/priority.md). SQLite's default is 0, before each step: there the
question is one SELECT the queue broker keeps prepared on the queue's own file
(config/queue_broker.py), a small part of a step, and a batch's fan-out takes the one
write lock by asking for it itself (services.batches), not in the pauses between steps.
"""

import logging
import time
from collections.abc import Callable

from django.conf import settings

from automation.engine import traces
from automation.engine.executor import claim_group, execute_claimed, grouped_outcome
from automation.engine.scope import load_entities
from automation.store import Claim, get_store
from automation.store.doorbell import higher_waiting, ring_pieces

logger = logging.getLogger(__name__)


def execute_chunk(step_run_ids: list[int], priority: str, *,
                  execute: Callable[[int], None]) -> int:
    """Run the steps within the bound (`execute(step_run_id)`: one step as its own
    doorbell runs it); returns how many were begun. A step that raises is logged and
    left to its lease and the sweeper (as a failed task of its own would be); the others
    still run, and the task then fails with the first error so the worker's log shows it."""
    started = time.monotonic()
    deadline = started + settings.ENTITYFLOW_CONTINUE_MAX_MS / 1000
    check_every = settings.ENTITYFLOW_PRIORITY_CHECK_MS / 1000
    next_check = started + check_every
    chunk = _Chunk(execute, grouping=not settings.Q_CLUSTER.get("sync"))
    begun = len(step_run_ids)
    for index, step_run_id in enumerate(step_run_ids):
        if index:
            now = time.monotonic()
            if now >= deadline:
                begun = index
                break
            # also asked before the second step whenever: that step's claim takes the
            # rest of the chunk together, which a yield would then give back one by one
            if now >= next_check or index == 1:
                if higher_waiting(priority):
                    begun = index
                    break
                next_check = now + check_every
        chunk.run(step_run_id, step_run_ids[index:])
    chunk.finish()  # the group's record, and the claims not begun given back
    if begun < len(step_run_ids):
        ring_pieces([step_run_ids[begun:]], priority=priority)
    if chunk.first_error is not None:
        raise chunk.first_error
    return begun


class _Chunk:
    """The state of one chunk task: the claims taken together and not begun yet, and the
    outcomes that wait for the group's record."""

    def __init__(self, execute: Callable[[int], None], *, grouping: bool):
        self.store = get_store()
        self.execute = execute
        # None: not known yet whether this chunk's steps can be recorded together (the
        # first step shows it: a chunk's steps are the same step of the same process)
        self.grouping: bool | None = None if grouping else False
        self.claimed: dict[int, Claim] = {}  # claimed together, not begun
        self.tried: set[int] = set()  # asked for in a group claim (taken or not)
        self.recorded: list[tuple[Claim, object, int]] = []  # waiting for the record
        self.spans: list = []
        self.function_rows: dict = {}
        self.entities: dict = {}  # the claimed steps' entities, loaded with each claim
        self.first_error: Exception | None = None

    def run(self, step_run_id: int, rest: list[int]) -> None:
        try:
            claim = self._claim(step_run_id, rest)
            if claim is None:  # not due for a group claim: as its own doorbell would
                self.execute(step_run_id)
                return
            done = grouped_outcome(self.store, claim, self.function_rows, self.entities)
            if done is None:  # a step that is run and recorded on its own
                self.grouping = False
                execute_claimed(self.store, claim)
                return
            self.grouping = True
            outcome, duration_ms, span = done
            if outcome is not None:
                self.recorded.append((claim, outcome, duration_ms))
                self.spans.append((span, claim))
        except Exception as exc:  # the step's row is the truth: the sweeper takes it
            self._failed(exc, f"step run {step_run_id} of a chunk doorbell failed")

    def _claim(self, step_run_id: int, rest: list[int]) -> Claim | None:
        claim = self.claimed.pop(step_run_id, None)
        if claim is not None or self.grouping is False or step_run_id in self.tried:
            return claim
        wanted = [step_run_id] if self.grouping is None else rest
        self.tried.update(wanted)
        claims = claim_group(self.store, wanted)
        self.claimed.update((c.step_run.pk, c) for c in claims)
        self.entities.update(load_entities([c.step_run.run for c in claims]))
        return self.claimed.pop(step_run_id, None)

    def finish(self) -> None:
        """Record the group in one transaction, then give back what was claimed and not
        begun (the caller rings for it)."""
        try:
            self.store.record_group(self.recorded)
        except Exception as exc:  # left running under the lease: the sweeper takes them
            self._failed(exc, f"the record of {len(self.recorded)} steps of a chunk failed")
        else:
            for span, claim in self.spans:
                if span is not None:  # the record leaves the settled run here
                    traces.run_ended(claim.step_run.run)
        for claim in self.claimed.values():
            try:
                self.store.release(claim)
            except Exception:  # the lease runs out and the sweeper takes it back
                logger.warning("could not release step run %s", claim.step_run.pk,
                               exc_info=True)
        self.claimed.clear()

    def _failed(self, exc: Exception, message: str) -> None:
        logger.exception(message)
        self.first_error = self.first_error or exc
