"""python -m bench floor [--runs N] [--processes P]: the database floor of the e2e round
(PostgreSQL only; docs/performance.md, "The database floor of a step").

What the two workers of the e2e round cannot beat on this machine and database, whatever
the engine's Python does: the statements a worker sends for a 3-step run, taken from a
real run of the e2e process (`bench.step` steps) through Django's execute wrappers, then
sent again for fresh runs from plain psycopg loops in P processes (2, as the round's
workers), each statement its own flushed commit (autocommit, as the engine sends them),
values bound by the server (prepared, as the engine sends them). No Django, no engine,
no broker, no step function in the loop. The runs and their first step runs are created
by the engine's own `run_start` before the clock, as the round creates them before its
workers start.

Each run's values are the captured ones with the run's own ids put in (bench.replay,
shared with the API trigger's floor): the captured run id becomes the fresh run's,
every other UUID (a claim) a new one per run, the captured step run ids the fresh
run's (a record returns its successor's id, which the next statement uses), every
timestamp now plus its captured offset from the statement's earliest. Every run must
end completed with 3 completed step runs, or the floor fails: a replay that skipped
work would flatter nothing.

Prints steps/s, client and backend CPU per step (from /proc), the machine's load, and
as its last line one JSON object {"floor": {...}}.
"""

import argparse
import json
import multiprocessing
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import replay
from bench.env import Options, database_create, database_drop, django_start
from bench.procs import cpu_seconds

STEPS = 3
WARM_RUNS = 3  # runs before the captured one: the worker's caches and prepared statements


def _capture(process) -> tuple[list, dict]:
    """One real run's worker statements [(sql, params, slots)] (bench.replay), and its ids."""
    from automation.models import StepRun
    from automation.services.runs import run_start
    from automation.tasks import step_execute
    from bench.procs import queue_purge

    for n in range(WARM_RUNS + 1):
        run, _ = run_start(process=process, trigger={"type": "manual"}, input={"i": n})
        queue_purge()
        first = StepRun.objects.filter(run=run).values_list("pk", flat=True).get()
        with replay.captured() as log:
            step_execute(first)
    steps = list(StepRun.objects.filter(run=run).order_by("pk").values_list("pk", flat=True))
    if len(steps) != STEPS or len(log) != STEPS + 1:
        raise SystemExit(f"floor: expected {STEPS + 1} statements for {STEPS} steps, the "
                         f"engine sent {len(log)} for {len(steps)}: update bench/floor.py")
    statements = [(sql, params, replay.slots(params, run=run.pk, steps=frozenset(steps)))
                  for sql, params in log]
    return statements, {"run": run.pk, "steps": steps}


def _loop(url: str, statements: list, captured: dict, runs: list, start_at: float, results):
    import psycopg

    connection = psycopg.connect(url, autocommit=True)
    cursor = connection.cursor()
    backend = connection.info.backend_pid
    while time.time() < start_at:
        time.sleep(0.001)
    cpu, backend_cpu, began = cpu_seconds(os.getpid()), cpu_seconds(backend), time.monotonic()
    idle = _idle_seconds()
    for run_id, first_step in runs:
        step_ids, claims = {captured["steps"][0]: first_step}, {}
        for index, (sql, params, plan) in enumerate(statements):
            values = replay.filled(params, plan, run_id=run_id, now=datetime.now(UTC),
                                   step_ids=step_ids, claims=claims)
            cursor.execute(sql, values, prepare=True)
            row = cursor.fetchone()
            if row is None:
                raise SystemExit(f"floor: statement {index} changed nothing for run {run_id}")
            if 0 < index < STEPS:  # a record that claims its successor returns its id
                step_ids[captured["steps"][index]] = row[-1]
    ended, idle = time.monotonic(), _idle_seconds() - idle
    results.put((len(runs) * STEPS, began, ended, cpu_seconds(os.getpid()) - cpu,
                 cpu_seconds(backend) - backend_cpu, idle))
    connection.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench floor", description=__doc__)
    parser.add_argument("--runs", type=int, default=1500, help="runs per process")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    opts = Options(db="postgres", broker="redis")
    database_create(opts)
    try:
        django_start(opts)
        return _measure(opts, args.runs, args.processes)
    finally:
        database_drop(opts)


def _measure(opts, runs_each: int, processes: int) -> int:
    from django.db import connection

    from automation.models import Run, StepRun
    from automation.services.runs import run_start
    from bench import fixtures
    from bench.procs import queue_purge

    process = fixtures.process_create("bench-e2e", steps=STEPS, function="bench.step")
    fresh = []
    for n in range(runs_each * processes):
        run, _ = run_start(process=process, trigger={"type": "manual"}, input={"i": n})
        fresh.append((run.pk, None))
    queue_purge()
    # captured after the fresh runs: its step run ids are larger than any of theirs, so
    # no small number among the values (an attempt, a count) is taken for one
    statements, captured = _capture(process)
    firsts = dict(StepRun.objects.filter(run_id__in=[r for r, _ in fresh])
                  .values_list("run_id", "pk"))
    fresh = [(run_id, firsts[run_id]) for run_id, _ in fresh]
    settings = connection.settings_dict
    url = (f"postgresql://{settings['USER']}@{settings['HOST']}:{settings['PORT']}"
           f"/{settings['NAME']}")
    connection.close()
    results = multiprocessing.get_context("fork").Queue()
    start_at = time.time() + 1.0
    loops = [multiprocessing.get_context("fork").Process(
        target=_loop, args=(url, statements, captured, fresh[i::processes], start_at, results))
        for i in range(processes)]
    for loop in loops:
        loop.start()
    done = [results.get() for _ in loops]
    for loop in loops:
        loop.join()
    idle = min(d[5] for d in done)  # the machine's, over the shorter loop's span
    steps = sum(d[0] for d in done)
    span = max(d[2] for d in done) - min(d[1] for d in done)
    completed = Run.objects.filter(pk__in=[r for r, _ in fresh], status="completed").count()
    step_runs = StepRun.objects.filter(run_id__in=[r for r, _ in fresh],
                                       status="completed").count()
    if completed != len(fresh) or step_runs != len(fresh) * STEPS:
        raise SystemExit(f"floor: {completed} of {len(fresh)} runs completed, {step_runs} "
                         f"step runs: the replay did not do the engine's work")
    figures = {
        "processes": processes, "steps": steps, "steps_per_s": round(steps / span),
        "client_cpu_ms_per_step": round(sum(d[3] for d in done) * 1000 / steps, 3),
        "backend_cpu_ms_per_step": round(sum(d[4] for d in done) * 1000 / steps, 3),
        "idle_core_ms_per_step": round(idle * 1000 / steps, 3),  # a lower bound
        "load_1m": round(os.getloadavg()[0], 2),
    }
    for name, value in figures.items():
        print(f"{name:28} {value}")
    print(json.dumps({"floor": figures}))
    return 0


def _idle_seconds() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (fields[3] + fields[4]) / os.sysconf("SC_CLK_TCK")
