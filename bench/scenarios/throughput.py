"""e2e_ratio, e2e_nodb_ratio, steps_per_s (and, for comparison, e2e_ratio_stored and
steps_per_s_inline): runs of a 3-step process through real workers, against bare
django-q2 tasks on the same workers, broker, database and connection settings.

- The engine's process is 3 plain Python function steps (`bench.step`, registered in
  code in bench/functions.py and not marked cheap): steps like any a user writes.
- `e2e_ratio` holds its runs/s against hand-written chains of 3 django-q2 tasks
  (`bench.tasks.chain`, `save=False`) where each task writes one durable row in the
  worker and enqueues the next: what the engine does for a run, written by hand.
- `e2e_nodb_ratio` holds the same runs/s against bare `save=False` no-op tasks, 3 per run.
- `e2e_ratio_stored` is the earlier figure, kept for comparison: runs/s of a 3-step
  `noop` process against bare no-op tasks whose results the cluster stores (`save=True`).
  `steps_per_s_inline` is that process's step rate.

On PostgreSQL `e2e_nodb_ceiling` is shown beside them (a context figure, no goal): the
same runs replayed as the least any engine can do through these workers (bench/floor.py,
`worker_round`: each run one bare `save=False` task sending the engine's own 4 statements
from plain psycopg, each durable before the next, no step function), in steps/s over the
bare no-op tasks' rate measured in the same rounds: the highest `e2e_nodb_ratio` an engine
whose steps are each durable before the next starts could measure in this run.

The machine's ceiling is shown beside them (a context row, no goal): durable
one-statement commits/s of two processes (bench.ceiling). A chain needs one such commit
per task; an engine run of 3 steps needs RUN_COMMITS on PostgreSQL (the first step's
claim, which must be durable before a step that may call out runs, and each step's
record), so neither rate can pass the ceiling divided by its commits.

Every side starts from a queue filled while no worker runs, then a fresh 2-worker
qcluster drains it. Each clock starts when the first task (or step) starts, so the
cluster's start-up is excluded, and stops when the work is done: for bare tasks at the
last task's end (a chain's mark is written after its row's commit), for stored results
when the driver sees the last Task row, for the engine when the driver sees the last run
finished (a 10 ms poll: at most that late, never early). Rounds alternate and the medians
are compared.
"""

import time

from bench import ceiling, fixtures, floor, profiling
from bench.procs import qcluster, queue_purge
from bench.stats import median, ratio, wait_until
from bench.tasks import chain_rows, chain_table_reset, marks_count, marks_read, marks_reset

STEPS = 3
# Flushed commits of one engine run of STEPS steps on PostgreSQL: the first step's claim
# and every step's record (docs/performance.md); a chain flushes one per task.
RUN_COMMITS = STEPS + 1


def bare_round(opts, tasks: int, *, saved: bool = True) -> float:
    """Bare no-op tasks/s. `saved`: as django-q2 runs them by default, each task's result
    is stored by the cluster (the rate counts until the last one is stored); else with
    `save=False`, a task that leaves no trace at all."""
    from django_q.brokers import get_broker
    from django_q.models import Task
    from django_q.tasks import async_task

    queue_purge()
    marks_reset()
    Task.objects.all().delete()
    broker = get_broker()
    for _ in range(tasks):
        async_task("bench.tasks.bare", 0.0, broker=broker, save=saved)
    cluster = qcluster(opts)
    try:
        if saved:
            wait_until(lambda: Task.objects.count() >= tasks, timeout=600, interval=0.02,
                       what="bare task results")
            end = time.time()
        else:
            wait_until(lambda: marks_count() >= tasks, timeout=600, what="bare tasks")
    finally:
        cluster.stop()
    rows = marks_read()
    if not saved:
        end = max(r[2] for r in rows)
    return tasks / (end - min(r[1] for r in rows))


def _chain_round(opts, chains: int) -> float:
    """Chains/s of hand-written durable chains: each of `STEPS` tasks writes one row
    (committed) and enqueues the next (save=False)."""
    from django_q.brokers import get_broker
    from django_q.tasks import async_task

    queue_purge()
    marks_reset()
    chain_table_reset()
    broker = get_broker()
    for n in range(chains):
        async_task("bench.tasks.chain", n, 1, STEPS, broker=broker, save=False)
    cluster = qcluster(opts)
    try:
        wait_until(lambda: marks_count() >= chains * STEPS, timeout=600, interval=0.02,
                   what="durable chains")
    finally:
        cluster.stop()
    if chain_rows() != chains * STEPS:
        raise AssertionError(f"{chain_rows()} chain rows, expected {chains * STEPS}")
    rows = marks_read()
    return chains / (max(r[2] for r in rows) - min(r[1] for r in rows))


def _engine_round(opts, process, runs: int, profile_as: str | None, entities=None) -> dict:
    from django.db import connection
    from django.db.models import Min

    from automation.models import Run, StepRun
    from automation.services.runs import run_start

    queue_purge()
    started = []
    for i in range(runs):
        run, _ = run_start(process=process, trigger={"type": "manual"}, input={"i": i},
                           entity=entities[i] if entities else None)
        started.append(run.pk)
    # The driver's poll shares the two cores with the workers, so it must cost what the
    # baselines' does (a few lines of their marks files): asking with the 500 run ids
    # (Django preparing each, PostgreSQL matching the list) every 10 ms took 0.2-0.3
    # core-ms per step from them (docs/performance.md). The process's unfinished runs are
    # exactly this round's (checked here, before any worker runs), so "none unfinished"
    # is "all of them finished", asked through the (process, status) index.
    unfinished = Run.objects.filter(process=process, status__in=[
        s for s in Run.Status.values if s not in Run.FINISHED])
    if set(unfinished.values_list("pk", flat=True)) != set(started):
        raise AssertionError("the process has unfinished runs other than this round's")
    sql, params = unfinished.values("pk")[:1].query.sql_with_params()  # built once

    def all_finished() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone() is None

    cluster = qcluster(opts)
    sampler = profiling.sampler_start(profile_as, cluster.pid) if profile_as else None
    try:
        wait_until(all_finished, timeout=900, interval=0.01, what="engine runs")
        end = time.time()  # the driver saw every run finished (committed)
    finally:
        profiling.sampler_stop(sampler, profile_as, focus="step_execute")
        cluster.stop()
    failed = Run.objects.filter(pk__in=started).exclude(status=Run.Status.COMPLETED).count()
    if failed:
        raise AssertionError(f"{failed} of {runs} runs did not complete")
    first = StepRun.objects.filter(run_id__in=started).aggregate(t=Min("started_at"))["t"]
    span = end - first.timestamp()
    return {"runs_per_s": runs / span, "steps_per_s": runs * STEPS / span}


def _one_process_round(process, runs: int) -> float:
    """Steps/s when this process executes the same runs one after another (no queue, no
    concurrency): with the 2-worker rate it shows how well the database lets workers scale."""
    from automation.models import Run, StepRun
    from automation.services.runs import run_start
    from automation.tasks import step_execute

    ids = []
    for i in range(runs):
        run, _ = run_start(process=process, trigger={"type": "manual"}, input={"i": i})
        ids.append(run.pk)
    queue_purge()
    pending = StepRun.objects.filter(run_id__in=ids, status=StepRun.Status.PENDING)
    started = time.perf_counter()
    while due := list(pending.order_by("pk").values_list("pk", flat=True)):
        for step_run_id in due:  # each run's next step, where the worker did not run it
            step_execute(step_run_id)
    elapsed = time.perf_counter() - started
    done = Run.objects.filter(pk__in=ids, status=Run.Status.COMPLETED).count()
    if done != runs:
        raise AssertionError(f"{runs - done} of {runs} runs executed in-process did not complete")
    return runs * STEPS / elapsed


def run(opts) -> dict:
    runs, rounds = (100, 1) if opts.quick else (500, 2)
    functions = fixtures.process_create("bench-e2e", steps=STEPS, function="bench.step")
    noops = fixtures.process_create("bench-e2e-noop", steps=STEPS)
    chains, unsaved, engine, stored, inline, least = [], [], [], [], [], []
    replayed = opts.db == "postgres"  # the floor's replay is PostgreSQL's statements
    if replayed:
        floor.capture_for_workers(functions)
    for r in range(rounds):
        chains.append(_chain_round(opts, runs))
        profile_as = "worker-e2e" if opts.profile and r == 0 else None
        engine.append(_engine_round(opts, functions, runs, profile_as))
        unsaved.append(bare_round(opts, runs * STEPS, saved=False))
        if replayed:
            least.append(floor.worker_round(opts, functions, runs))
        stored.append(bare_round(opts, runs * STEPS))
        inline.append(_engine_round(opts, noops, runs, None))
        time.sleep(0.5)
    single = _one_process_round(functions, 30 if opts.quick else 100)
    commits = ceiling.commits_per_s(3.0 if opts.quick else 5.0)
    chains_per_s, nodb_tasks, stored_tasks = median(chains), median(unsaved), median(stored)
    runs_per_s = median([e["runs_per_s"] for e in engine])
    steps_per_s = median([e["steps_per_s"] for e in engine])
    noop_runs = median([e["runs_per_s"] for e in inline])
    noop_steps = median([e["steps_per_s"] for e in inline])
    rows = [
        (f"3-step Python-function runs/s ({runs} runs)", f"{runs_per_s:.1f}/s"),
        (f"bare durable 3-task chains/s ({runs} chains, a row per task)", f"{chains_per_s:.1f}/s"),
        (f"bare no-op tasks/s, save=False ({runs * STEPS} tasks)", f"{nodb_tasks:.0f}/s"),
        ("step executions/s (Python function steps)", f"{steps_per_s:.0f}/s"),
        ("steps/s executed by one process in turn (no queue)", f"{single:.0f}/s"),
        ("2 workers / 1 process", f"{steps_per_s / single:.2f}×"),
        (f"ceiling: durable one-statement commits/s, {ceiling.PROCESSES} processes",
         f"{commits:.0f}/s"),
        (f"  bare chain tasks/s (one durable commit each; ceiling {commits:.0f}/s)",
         f"{chains_per_s * STEPS:.0f}/s"),
        (f"  steps/s at the ceiling ({RUN_COMMITS} durable commits per {STEPS}-step run)",
         f"{commits * STEPS / RUN_COMMITS:.0f}/s"),
        *([("least durable engine: its statements as 1 bare task/run (floor)",
            f"{median(least):.0f} steps/s, {median(least) / nodb_tasks:.2f} of no-op")]
          if least else []),
        (f"for comparison: 3-step noop runs/s ({runs} runs)", f"{noop_runs:.1f}/s"),
        ("  against bare no-op tasks/s with results stored", f"{stored_tasks:.0f}/s"),
    ]
    return {"figures": {"e2e_ratio": ratio(runs_per_s, chains_per_s),
                        "e2e_nodb_ratio": ratio(runs_per_s, nodb_tasks / STEPS),
                        "e2e_nodb_ceiling": ratio(median(least), nodb_tasks) if least
                        else None,
                        "e2e_ratio_stored": ratio(noop_runs, stored_tasks / STEPS),
                        "steps_per_s": steps_per_s, "steps_per_s_inline": noop_steps},
            "rows": rows,
            "detail": {"chains": chains, "bare_unsaved": unsaved, "bare_stored": stored,
                       "engine": engine, "engine_noop": inline, "least_engine": least,
                       "durable_commits_per_s": commits, "one_process_steps_per_s": single}}
