"""Steps continue in the worker that holds the run (docs/architecture.md, "Steps
continue in the worker"), with real qcluster workers: the history is the broker path's,
a worker killed mid-chain loses and repeats nothing, and a long run yields its worker."""

import json

import pytest

from automation.models import ApiProcess, Effect, Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_start
from automation.services.sweeper import steps_sweep
from tests.worker import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Every kind of edge: plain successors, a condition, a loop (its iterations through the
# ledger), a fan-out to a join, a failure handled by onError.
SHAPES = [
    {"id": "a", "type": "function", "function": "worker.effect", "next": "check"},
    {"id": "check", "type": "condition", "condition": "result.step == 'a'", "next": "shape",
     "config": {"else": "other"}},
    {"id": "other", "type": "function", "function": "worker.effect"},
    {"id": "shape", "type": "function", "function": "transform", "next": "each",
     "config": {"params": {"output": {"from": "result.step", "n": "input.n"}}}},
    {"id": "each", "type": "loop", "next": "body",
     "config": {"items": "input.items", "then": "split"}},
    {"id": "body", "type": "function", "function": "worker.ledgered"},
    {"id": "split", "type": "parallel", "next": ["left", "right"]},
    {"id": "left", "type": "function", "function": "worker.effect", "next": "join"},
    {"id": "right", "type": "function", "function": "transform", "next": "join",
     "config": {"params": {"output": {"right": "input"}}}},
    {"id": "join", "type": "function", "function": "worker.effect", "next": "flaky"},
    {"id": "flaky", "type": "function", "function": "worker.fail",
     "config": {"onError": "recover", "params": {"message": "no luck"}}},
    {"id": "recover", "type": "function", "function": "worker.effect", "next": "end"},
    {"id": "end", "type": "function", "function": "transform",
     "config": {"params": {"output": {"done": "true"}}}},
]
STEP_FIELDS = ("step_id", "scope", "index", "step_type", "status", "attempt", "key_attempt",
               "input", "output", "error", "state", "logs")


def continued(step_run: StepRun) -> bool:
    """Claimed in its predecessor's record: its start was stamped before its row was
    written (a step rung for is claimed after its row exists)."""
    return step_run.started_at is not None and step_run.started_at <= step_run.created_at


def history(run: Run) -> str:
    """Everything a run leaves (steps, outputs, statuses, attempts, logs, ledger), with
    the run's id and the times taken out."""
    run.refresh_from_db()
    steps = sorted(
        [[getattr(s, f) for f in STEP_FIELDS]
         for s in StepRun.objects.filter(run=run)], key=lambda row: (row[0], row[1]))
    for row in steps:
        row[-1] = [{k: v for k, v in line.items() if k != "at"} for line in row[-1]]
    effects = sorted(Effect.objects.filter(run=run).values_list(
        "key", "step_id", "scope", "action", "result", "calls", "served"))
    text = json.dumps([run.status, run.result, run.error, steps, effects], sort_keys=True,
                      default=str)
    return text.replace(str(run.pk), "RUN")


PLAIN = [{"id": "a", "type": "function", "function": "worker.effect", "next": "b"},
         {"id": "b", "type": "function", "function": "worker.effect", "next": "c"},
         {"id": "c", "type": "function", "function": "worker.effect"}]


def runs_with_worker(tmp_path, name: str, processes: list, effects, **env
                     ) -> tuple[list[Run], list[str]]:
    before = len(effects.read_text().split())
    worker = Worker(tmp_path / f"{name}.log", **env)
    try:
        runs = [run_start(process=process, trigger={"type": "manual"},
                          input={"n": 7, "items": [1, 2, 3]})[0] for process in processes]
        wait_for(lambda: Run.objects.filter(pk__in=[r.pk for r in runs],
                                            status__in=Run.FINISHED).count() == len(runs),
                 120, message=f"the runs ({name}) to finish")
    finally:
        worker.stop()
    lines = effects.read_text().split()[before:]
    for run in runs:
        lines = [line.replace(str(run.pk), f"RUN-{run.process.slug}") for line in lines]
    return runs, sorted(lines)


def test_a_run_continued_in_the_worker_leaves_exactly_the_broker_paths_history(
        effects, queued_mode, tmp_path):
    """Every shape (loop, fan-out, join, onError) and a plain sequential run (on
    PostgreSQL recorded in one statement with its claimed successor)."""
    processes = [process_save(slug="shapes", name="Shapes", definition={"steps": SHAPES}),
                 process_save(slug="plain", name="Plain", definition={"steps": PLAIN})]
    broker_runs, broker_effects = runs_with_worker(tmp_path, "broker", processes, effects,
                                                   ENTITYFLOW_CONTINUE_MAX_STEPS="0")
    here_runs, here_effects = runs_with_worker(tmp_path, "continued", processes, effects)
    for broker_run, here_run in zip(broker_runs, here_runs, strict=True):
        assert history(here_run) == history(broker_run)  # (both read again here)
        assert broker_run.status == Run.Status.COMPLETED, broker_run.error
    assert here_effects == broker_effects
    assert len(broker_effects) == 10  # a, 3 loop bodies, left, join, recover; plain a, b, c
    assert Effect.objects.filter(run=here_runs[0]).count() == 3
    # the continuation did happen (and not with it switched off); fan-out branches and
    # the join they release still went through the broker
    assert not any(continued(s) for s in StepRun.objects.filter(run__in=broker_runs))
    here = {(s.step_id, s.scope): continued(s) for s in StepRun.objects.filter(run=here_runs[0])}
    assert here[("check", "")] and here[("shape", "")] and here[("body", "each[1]")]
    assert here[("recover", "")] and here[("end", "")]
    assert not here[("a", "")] and not here[("left", "")] and not here[("right", "")]
    assert not here[("join", "")]
    plain = {s.step_id: continued(s) for s in StepRun.objects.filter(run=here_runs[1])}
    assert plain == {"a": False, "b": True, "c": True}


CHAIN = [{"id": "a", "type": "function", "function": "worker.effect", "next": "b"},
         {"id": "b", "type": "function", "function": "worker.effect", "next": "c"},
         {"id": "c", "type": "function", "function": "worker.slow", "next": "d",
          "config": {"params": {"seconds": 4}}},
         {"id": "d", "type": "function", "function": "worker.effect", "next": "e"},
         {"id": "e", "type": "function", "function": "worker.effect"}]


def test_a_worker_killed_mid_chain_loses_nothing_and_repeats_nothing(effects, queued_mode,
                                                                     tmp_path):
    env = {"ENTITYFLOW_STEP_LEASE_SECONDS": "5", "Q_TIMEOUT": "20", "Q_RETRY": "30"}
    process = process_save(slug="chain", name="Chain", definition={"steps": CHAIN})
    first = Worker(tmp_path / "w1.log", **env)
    try:
        run, _ = run_start(process=process, trigger={"type": "manual"})
        wait_for(lambda: StepRun.objects.filter(run=run, step_id="c", status="running").exists(),
                 60, message="the slow step to start")
    finally:
        first.kill()
    c = StepRun.objects.get(run=run, step_id="c")
    assert continued(c)  # claimed in b's record: no doorbell exists for it
    assert sorted(effects.read_text().split()) == sorted(f"{run.pk}:{s}" for s in "ab")
    second = Worker(tmp_path / "w2.log", **env)
    try:
        def finished():
            steps_sweep(pending_grace_seconds=5)  # what the scheduled sweeper does
            run.refresh_from_db()
            return run.status in Run.FINISHED

        wait_for(finished, 90, interval=1, message="the run to finish after the kill")
    finally:
        second.stop()
    assert run.status == Run.Status.COMPLETED, run.error
    assert sorted(effects.read_text().split()) == sorted(f"{run.pk}:{s}" for s in "abcde")
    steps = {s.step_id: s for s in StepRun.objects.filter(run=run)}
    assert sorted(steps) == list("abcde")
    assert {k: s.attempt for k, s in steps.items()} == {"a": 1, "b": 1, "c": 2, "d": 1, "e": 1}
    assert "lost its worker (attempt 1)" in str(steps["c"].logs)


MAX_STEPS = 5


def test_a_thousand_step_run_yields_its_worker_to_other_runs(effects, queued_mode, tmp_path):
    long = process_save(slug="long", name="Long", definition={"steps": [
        {"id": "each", "type": "loop", "next": "body", "config": {"items": "input.items"}},
        {"id": "body", "type": "function", "function": "noop"}]})
    short = process_save(slug="short", name="Short", definition={"steps": [
        {"id": "only", "type": "function", "function": "worker.effect"}]})
    worker = Worker(tmp_path / "worker.log", Q_WORKERS="1",
                    ENTITYFLOW_CONTINUE_MAX_STEPS=str(MAX_STEPS),
                    ENTITYFLOW_CONTINUE_MAX_MS="600000")
    try:
        long_run, _ = run_start(process=long, trigger={"type": "manual"},
                                input={"items": list(range(1000))})
        bodies = StepRun.objects.filter(run=long_run, step_id="body", status="completed")
        wait_for(lambda: bodies.count() >= 20, 60, message="the long run to get going")
        others = [run_start(process=short, trigger={"type": "manual"})[0] for _ in range(10)]
        wait_for(lambda: Run.objects.filter(pk__in=[r.pk for r in others],
                                            status=Run.Status.COMPLETED).count() == 10,
                 120, message="the other runs")
        others_done = Run.objects.filter(pk__in=[r.pk for r in others]).order_by(
            "-finished_at").first().finished_at
        wait_for(lambda: Run.objects.filter(pk=long_run.pk, status__in=Run.FINISHED).exists(),
                 300, interval=0.5, message="the long run to finish")
    finally:
        worker.stop()
    long_run.refresh_from_db()
    assert long_run.status == Run.Status.COMPLETED, long_run.error
    assert long_run.finished_at > others_done  # the others did not wait for all of it
    assert StepRun.objects.filter(run=long_run, step_id="body").count() == 1000
    starts = list(StepRun.objects.filter(run=long_run, step_id="body")
                  .values_list("started_at", flat=True))
    continued_bodies = StepRun.objects.filter(run=long_run, step_id="body")
    assert any(continued(s) for s in continued_bodies)
    for other in others:
        step = StepRun.objects.get(run=other)
        # one worker: while this run waited, the long run ran at most its bound (and the
        # step that was claimed through the broker first) a few times over, as doorbells
        # already fetched by the cluster go first
        ahead = sum(other.created_at < at < step.started_at for at in starts)
        assert ahead <= 3 * (MAX_STEPS + 1), ahead
    assert ApiProcess.objects.count() == 2
