"""Writing the step runs that come after one: plain successors, arrivals at a join, and
the iterations of a loop. Called by the store with the run's row lock held."""

from typing import Any

from django.db import connections, router, transaction
from django.utils import timezone

from automation.definitions import Graph, Step
from automation.models import Run, StepRun
from automation.store.claims import Claim, Handover, continuation_claim_fields
from automation.store.doorbell import enqueue_step
from automation.store.graphs import is_sequential
from automation.store.policy import step_timeout_seconds
from automation.store.state import StepState
from entities.db.compiled import insert_from


def follow(run: Run, graph: Graph, from_run: StepRun, targets: list[str], *, result: Any,
           scope: str | None = None, handover: Handover | None = None,
           seen_steps: dict | None = None) -> list[StepRun]:
    """Schedule `targets` after `from_run`; no target means a branch ended here.

    A single target is written already claimed by the worker when it may continue
    there and the worker's handover takes it (claims.continuation_claim_fields); every
    other one, and each branch of a fan-out (so the branches run in parallel), gets a
    doorbell after commit. Returns the new rows (the run's status can then be settled
    without a re-read).
    """
    scope = from_run.scope if scope is None else scope
    if not targets:
        state = StepState.from_json(from_run.state)
        if not state.terminal:
            state.terminal = True
            from_run.state = state.to_json()
            from_run.save(update_fields=["state"])
        return []
    if len(targets) > 1:
        handover = None  # a fan-out: every branch through the broker, to run in parallel
    followers = []
    for target in targets:
        step = graph.steps[target]
        if graph.is_join(target):
            arrive_at_join(run, step, scope, from_run.step_id, result)
            continue
        new = successor_row(run, step, from_run, result, scope=scope, handover=handover)
        insert_step(new)
        hand_over(run, graph, from_run, new, handover=handover, seen_steps=seen_steps)
        followers.append(new)
    return followers


def successor_row(run: Run, step: Step, from_run: StepRun, result: Any, *, scope: str,
                  handover: Handover | None) -> StepRun:
    """The row of `step` after `from_run`, unsaved: already claimed by this worker when
    it may continue here and the worker's handover takes it
    (claims.continuation_claim_fields)."""
    claimed = continuation_claim_fields(handover, step)
    return StepRun(run=run, step_id=step.id, step_type=step.type, scope=scope, input=result,
                   index=from_run.index if scope else None, priority=run.priority,
                   **(claimed or {}))


def insert_step(new: StepRun) -> None:
    """`new.save(force_insert=True)` with its INSERT compiled once per database
    (entities.db.compiled): a record writes one every step."""
    using = router.db_for_write(StepRun)
    connection = connections[using]
    sql, params = insert_from(new, None, using)
    pk = connection.ops.quote_name(StepRun._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {pk}", params)  # noqa: S608 - compiled SQL only
        new.pk = cursor.fetchone()[0]
    new._state.adding, new._state.db = False, using


def hand_over(run: Run, graph: Graph, from_run: StepRun, new: StepRun, *,
              handover: Handover | None, seen_steps: dict | None) -> None:
    """Once `new` is written: queue it on this worker after commit (it was written
    claimed), or ring for it."""
    if new.claim is not None:
        claim = Claim(new, known_steps=known_steps(run, from_run, seen_steps), durable=True)
        transaction.on_commit(lambda: handover.run_here(claim))
    else:
        enqueue_step(new.pk, timeout=step_timeout_seconds(graph.steps[new.step_id]),
                     priority=new.priority)


def known_steps(run: Run, from_run: StepRun, seen: dict | None) -> dict | None:
    """What `steps` holds for the successor of `from_run` in a sequential run (see
    graphs.is_sequential), so the successor need not read it again; None otherwise."""
    if seen is None or from_run.status != StepRun.Status.COMPLETED:
        return None
    if not is_sequential(run.version_id):
        return None
    return {**seen, from_run.step_id: {"output": from_run.output}}


def arrive_at_join(run: Run, step: Step, scope: str, from_step: str, result: Any) -> None:
    join, _ = StepRun.objects.get_or_create(
        run=run, step_id=step.id, scope=scope,
        defaults={"step_type": step.type, "status": StepRun.Status.WAITING,
                  "state": StepState(join=True, arrivals={}).to_json()},
    )
    state = StepState.from_json(join.state)
    if join.status != StepRun.Status.WAITING or not state.join:
        return  # already released: a late branch cannot fire the join twice
    state.arrivals = {**(state.arrivals or {}), from_step: result}
    join.state = state.to_json()
    join.save(update_fields=["state"])


def iteration_scope(loop_run: StepRun, index: int) -> str:
    name = f"{loop_run.step_id}[{index}]"
    return f"{loop_run.scope}/{name}" if loop_run.scope else name


def start_iteration(run: Run, graph: Graph, loop_run: StepRun, index: int, *,
                    handover: Handover | None = None) -> None:
    state = StepState.from_json(loop_run.state)
    state.current = index
    loop_run.state = state.to_json()
    loop_run.save(update_fields=["state"])
    follow(run, graph, loop_run, graph.steps[loop_run.step_id].next,
           result=state.items[index], scope=iteration_scope(loop_run, index), handover=handover)
    StepRun.objects.filter(run=run, scope=iteration_scope(loop_run, index)).update(index=index)


def finish_loop(run: Run, graph: Graph, loop_run: StepRun, *,
                handover: Handover | None = None) -> None:
    loop_run.status = StepRun.Status.COMPLETED
    loop_run.output = StepState.from_json(loop_run.state).results or []
    loop_run.finished_at = timezone.now()
    loop_run.save()
    then = graph.steps[loop_run.step_id].config.get("then")
    follow(run, graph, loop_run, [then] if then else [], result=loop_run.output,
           handover=handover)
