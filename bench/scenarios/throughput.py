"""e2e_ratio and steps_per_s: runs of a 3-step no-op process through real workers,
against bare django-q2 no-op tasks (3 per run) on the same workers, broker and database.

"Bare django-q2" is django-q2 as it runs a task by default: the cluster stores each
task's result (a Task row), as the engine stores each step's. That is the baseline the
issue's reference figures describe (~410 tasks/s on Redis + PostgreSQL, collapsing
without CONN_MAX_AGE, so touching the database). A task with save=False, which leaves no
trace, is measured once as well and shown for reference.

Both sides start from a queue filled while no worker runs, then a fresh 2-worker
qcluster drains it; the rate is counted from the first task starting to the last one
finishing, so the cluster's start-up is not part of either figure. Bare and engine
rounds alternate (ABAB) and the medians are compared.
"""

import time

from bench import fixtures, profiling
from bench.procs import qcluster, queue_purge
from bench.stats import median, ratio, wait_until
from bench.tasks import marks_count, marks_read, marks_reset

STEPS = 3


def _bare_round(opts, tasks: int, *, saved: bool = True) -> float:
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


def _engine_round(opts, process, runs: int, profile_as: str | None, entities=None) -> dict:
    from django.db.models import Max, Min

    from automation.models import Run, StepRun
    from automation.services.runs import run_start

    queue_purge()
    started = []
    for i in range(runs):
        run, _ = run_start(process=process, trigger={"type": "manual"}, input={"i": i},
                           entity=entities[i] if entities else None)
        started.append(run.pk)
    cluster = qcluster(opts)
    sampler = profiling.sampler_start(profile_as, cluster.pid) if profile_as else None
    done = Run.objects.filter(pk__in=started, status__in=Run.FINISHED)
    try:
        wait_until(lambda: done.count() >= runs, timeout=900, what="engine runs")
    finally:
        profiling.sampler_stop(sampler, profile_as, focus="step_execute")
        cluster.stop()
    failed = Run.objects.filter(pk__in=started).exclude(status=Run.Status.COMPLETED).count()
    if failed:
        raise AssertionError(f"{failed} of {runs} no-op runs did not complete")
    first = StepRun.objects.filter(run_id__in=started).aggregate(t=Min("started_at"))["t"]
    last = Run.objects.filter(pk__in=started).aggregate(t=Max("finished_at"))["t"]
    span = (last - first).total_seconds()
    return {"runs_per_s": runs / span, "steps_per_s": runs * STEPS / span}


def _one_process_round(process, runs: int) -> float:
    """Steps/s when this process executes the same runs one after another (no queue, no
    concurrency): with the 2-worker rate it shows how well the database lets workers scale."""
    from automation.models import Run, StepRun
    from automation.services.runs import run_start
    from automation.tasks import step_execute

    firsts = []
    for i in range(runs):
        run, _ = run_start(process=process, trigger={"type": "manual"}, input={"i": i})
        firsts.append(StepRun.objects.get(run=run, step_id="s1").pk)
    queue_purge()
    started = time.perf_counter()
    for step_run_id in firsts:
        step_execute(step_run_id)
    elapsed = time.perf_counter() - started
    done = Run.objects.filter(steps__pk__in=firsts, status=Run.Status.COMPLETED).count()
    if done != runs:
        raise AssertionError(f"{runs - done} of {runs} runs executed in-process did not complete")
    return runs * STEPS / elapsed


def run(opts) -> dict:
    runs, rounds = (100, 1) if opts.quick else (500, 2)
    process = fixtures.process_create("bench-e2e", steps=STEPS)
    bare, engine = [], []
    unsaved = _bare_round(opts, runs * STEPS, saved=False)
    for r in range(rounds):
        bare.append(_bare_round(opts, runs * STEPS))
        profile_as = "worker-e2e" if opts.profile and r == 0 else None
        engine.append(_engine_round(opts, process, runs, profile_as))
        time.sleep(0.5)
    single = _one_process_round(process, 30 if opts.quick else 100)
    bare_tasks = median(bare)
    runs_per_s = median([e["runs_per_s"] for e in engine])
    steps_per_s = median([e["steps_per_s"] for e in engine])
    rows = [
        (f"bare django-q2 no-op tasks/s, results stored ({runs * STEPS} tasks)",
         f"{bare_tasks:.0f}/s"),
        (f"3-step no-op runs/s ({runs} runs)", f"{runs_per_s:.1f}/s"),
        ("bare django-q2 no-op tasks/s with save=False (reference)", f"{unsaved:.0f}/s"),
        ("runs/s ÷ (that ÷ 3)", f"{ratio(runs_per_s, unsaved / STEPS):.2f}"),
        ("step executions/s", f"{steps_per_s:.0f}/s"),
        ("steps/s executed by one process in turn (no queue)", f"{single:.0f}/s"),
        ("2 workers / 1 process", f"{steps_per_s / single:.2f}×"),
    ]
    return {"figures": {"e2e_ratio": ratio(runs_per_s, bare_tasks / STEPS),
                        "steps_per_s": steps_per_s},
            "rows": rows, "detail": {"bare": bare, "bare_unsaved": unsaved, "engine": engine}}
