"""python -m bench floor [--runs N] [--processes P] [--through-workers]: the database floor
of the e2e round (PostgreSQL only; docs/performance.md, "The database floor of a step").

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

`--through-workers` (PostgreSQL + Redis, as the e2e round's goals): the same replay, but
each run is one bare django-q2 task (`save=False`) run by a fresh 2-worker qcluster, as
the e2e round's workers take a run's first step from the broker: the least any engine
can do for a run through these workers whose steps are each durable before the next
starts. Alternated in the same invocation with the e2e round's bare no-op tasks (3 per
run, `bench.scenarios.throughput`), so `e2e_nodb_ceiling` is the highest `e2e_nodb_ratio`
such an engine could measure here (docs/performance.md, "What is not met").
"""

import argparse
import json
import multiprocessing
import os
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from bench import replay
from bench.env import VAR, Options, database_create, database_drop, django_start
from bench.procs import cpu_seconds

# The captured statements, for the workers of --through-workers (written by this run's
# driver just before its workers start; nothing else writes there).
CAPTURE = VAR / "floor-capture.signed"

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


def _replay(cursor, statements: list, captured: dict, runs: list) -> None:
    """Runs' worker statements [(run id, first step run id)], prepared: for one run each
    statement its own flushed commit (autocommit, as the engine sends them); for several,
    each statement of every run in one transaction (a grouped engine's one commit per
    step of a group of runs, see `--group`)."""
    states = [(run_id, {captured["steps"][0]: first_step}, {}) for run_id, first_step in runs]
    for index, (sql, params, plan) in enumerate(statements):
        with cursor.connection.transaction() if len(runs) > 1 else nullcontext():
            for run_id, step_ids, claims in states:
                values = replay.filled(params, plan, run_id=run_id, now=datetime.now(UTC),
                                       step_ids=step_ids, claims=claims)
                cursor.execute(sql, values, prepare=True)
                row = cursor.fetchone()
                if row is None:
                    raise SystemExit(f"floor: statement {index} changed nothing for run {run_id}")
                if 0 < index < STEPS:  # a record that claims its successor returns its id
                    step_ids[captured["steps"][index]] = row[-1]


def run_task(runs: list) -> None:
    """--through-workers: runs' statements as one bare django-q2 task, marked (as the
    bare tasks are, bench.tasks) once its last commit returned, a mark per run."""
    from bench.tasks import mark

    started = time.time()
    statements, captured, cursor = _worker_side()
    _replay(cursor, statements, captured, runs)
    for _ in runs:
        mark(0.0, started, time.time())


def taken_task(step_run_id: int) -> None:
    """--group: the doorbell of a step its group's task took: one read of the step, as
    a grouped engine's claim would find it taken (it writes nothing, so no flush)."""
    from bench.tasks import mark

    started = time.time()
    _, _, cursor = _worker_side()
    cursor.execute(f"SELECT status FROM {_step_table()} WHERE id = %s",  # noqa: S608
                   [step_run_id], prepare=True)
    cursor.fetchall()
    mark(0.0, started, time.time())


def _step_table() -> str:
    from automation.models import StepRun

    return StepRun._meta.db_table


@lru_cache(maxsize=1)
def _worker_side() -> tuple:
    """The captured statements and one plain psycopg connection per worker process."""
    import psycopg
    from django.db import connection
    from django_q.signing import SignedPackage

    # signed as django-q2 signs its tasks: a file not written by this project is refused
    statements, captured = SignedPackage.loads(CAPTURE.read_text())
    plain = psycopg.connect(_url(connection.settings_dict), autocommit=True)
    return statements, captured, plain.cursor()


def _url(settings: dict) -> str:
    return (f"postgresql://{settings['USER']}@{settings['HOST']}:{settings['PORT']}"
            f"/{settings['NAME']}")


def _loop(url: str, statements: list, captured: dict, runs: list, start_at: float, results):
    import psycopg

    connection = psycopg.connect(url, autocommit=True)
    cursor = connection.cursor()
    backend = connection.info.backend_pid
    while time.time() < start_at:
        time.sleep(0.001)
    cpu, backend_cpu, began = cpu_seconds(os.getpid()), cpu_seconds(backend), time.monotonic()
    idle = _idle_seconds()
    for run in runs:
        _replay(cursor, statements, captured, [run])
    ended, idle = time.monotonic(), _idle_seconds() - idle
    results.put((len(runs) * STEPS, began, ended, cpu_seconds(os.getpid()) - cpu,
                 cpu_seconds(backend) - backend_cpu, idle))
    connection.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench floor", description=__doc__)
    parser.add_argument("--runs", type=int, default=1500, help="runs per process")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--through-workers", action="store_true",
                        help="each run a bare django-q2 task of a 2-worker qcluster, "
                             "alternated with bare no-op tasks (--runs runs per round)")
    parser.add_argument("--rounds", type=int, default=2, help="with --through-workers")
    parser.add_argument("--group", type=int, default=1,
                        help="with --through-workers: runs per task, each statement of "
                             "the group's runs in one transaction")
    args = parser.parse_args(argv)
    opts = Options(db="postgres", broker="redis")
    database_create(opts)
    try:
        django_start(opts)
        if args.through_workers:
            return _through_workers(opts, args.runs, args.rounds, max(1, args.group))
        return _measure(opts, args.runs, args.processes)
    finally:
        database_drop(opts)


def _fresh_runs(process, count: int) -> list:
    """`count` runs of `process` started by the engine, with their first step run ids
    [(run id, step run id)], their doorbells taken off the broker again."""
    from automation.models import StepRun
    from automation.services.runs import run_start
    from bench.procs import queue_purge

    fresh = []
    for n in range(count):
        run, _ = run_start(process=process, trigger={"type": "manual"}, input={"i": n})
        fresh.append(run.pk)
    queue_purge()
    firsts = dict(StepRun.objects.filter(run_id__in=fresh).values_list("run_id", "pk"))
    return [(run_id, firsts[run_id]) for run_id in fresh]


def _all_completed(fresh: list) -> None:
    """Every replayed run ended completed with its STEPS step runs, or the floor fails."""
    from automation.models import Run, StepRun

    ids = [r for r, _ in fresh]
    completed = Run.objects.filter(pk__in=ids, status="completed").count()
    step_runs = StepRun.objects.filter(run_id__in=ids, status="completed").count()
    if completed != len(fresh) or step_runs != len(fresh) * STEPS:
        raise SystemExit(f"floor: {completed} of {len(fresh)} runs completed, {step_runs} "
                         f"step runs: the replay did not do the engine's work")


def _print(figures: dict) -> None:
    for name, value in figures.items():
        print(f"{name:28} {value}")
    print(json.dumps({"floor": figures}))


def _through_workers(opts, runs: int, rounds: int, group: int) -> int:
    from bench import fixtures
    from bench.scenarios.throughput import bare_round
    from bench.stats import median

    process = fixtures.process_create("bench-e2e", steps=STEPS, function="bench.step")
    capture_for_workers(process)
    floor, bare = [], []
    for _ in range(rounds):
        floor.append(worker_round(opts, process, runs, group))
        bare.append(bare_round(opts, runs * STEPS, saved=False))
    steps_per_s, bare_per_s = median(floor), median(bare)
    _print({"through_workers": True, "runs_per_round": runs, "rounds": rounds, "group": group,
            "steps_per_s": round(steps_per_s), "rounds_steps_per_s": [round(f) for f in floor],
            "bare_noop_tasks_per_s": round(bare_per_s),
            "rounds_bare_noop_tasks_per_s": [round(b) for b in bare],
            # runs/s over bare no-op runs/s (3 tasks each), as e2e_nodb_ratio
            "e2e_nodb_ceiling": round(steps_per_s / bare_per_s, 3),
            "load_1m": round(os.getloadavg()[0], 2)})
    return 0


def capture_for_workers(process) -> None:
    """One real run of `process` captured, for `worker_round`'s workers (whose runs come
    after it). Its step run ids are put above 1,000,000 first, so that no small number
    among the values (an attempt, a count) is taken for one."""
    from django.db import connection

    from automation.models import StepRun

    table = StepRun._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT setval(pg_get_serial_sequence(%s, 'id'), greatest(1000000, "  # noqa: S608
                       f"(SELECT coalesce(max(id), 0) FROM {table})))", [table])
    statements, captured = _capture(process)
    from django_q.signing import SignedPackage

    CAPTURE.write_text(SignedPackage.dumps((statements, captured)))


def worker_round(opts, process, runs: int, group: int = 1) -> float:
    """Steps/s of `runs` fresh runs of `process` replayed by a fresh 2-worker qcluster,
    `group` runs per bare task (`run_task`), each group's other runs' doorbells sent
    after it as tasks of their own that find their step taken (`taken_task`), as a
    grouped engine's would. The clock runs from the first task's start to the last
    task's end (after its last commit), taken doorbells included. The runs are started
    just before the workers, so the sweeper (which rings a pending step only after
    ENTITYFLOW_SWEEP_PENDING_AFTER_SECONDS) leaves them to the replay; every one must end
    completed."""
    from django_q.brokers import get_broker
    from django_q.tasks import async_task

    from bench.procs import qcluster
    from bench.stats import wait_until
    from bench.tasks import marks_count, marks_read, marks_reset

    fresh = _fresh_runs(process, runs)
    marks_reset()
    broker = get_broker()
    tasks = 0
    for start in range(0, runs, group):
        together = fresh[start:start + group]
        async_task("bench.floor.run_task", together, broker=broker, save=False)
        for _, first_step in together[1:]:
            async_task("bench.floor.taken_task", first_step, broker=broker, save=False)
        tasks += 2 * len(together) - 1  # a mark per run, and one per taken doorbell
    cluster = qcluster(opts)
    try:
        wait_until(lambda: marks_count() >= tasks, timeout=600, interval=0.02,
                   what="the floor's runs through the workers")
    finally:
        cluster.stop()
    marks = marks_read()
    _all_completed(fresh)
    return runs * STEPS / (max(m[2] for m in marks) - min(m[1] for m in marks))


def _measure(opts, runs_each: int, processes: int) -> int:
    from django.db import connection

    from bench import fixtures

    process = fixtures.process_create("bench-e2e", steps=STEPS, function="bench.step")
    fresh = _fresh_runs(process, runs_each * processes)
    # captured after the fresh runs: its step run ids are larger than any of theirs, so
    # no small number among the values (an attempt, a count) is taken for one
    statements, captured = _capture(process)
    url = _url(connection.settings_dict)
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
    _all_completed(fresh)
    _print({
        "processes": processes, "steps": steps, "steps_per_s": round(steps / span),
        "client_cpu_ms_per_step": round(sum(d[3] for d in done) * 1000 / steps, 3),
        "backend_cpu_ms_per_step": round(sum(d[4] for d in done) * 1000 / steps, 3),
        "idle_core_ms_per_step": round(idle * 1000 / steps, 3),  # a lower bound
        "load_1m": round(os.getloadavg()[0], 2),
    })
    return 0


def _idle_seconds() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (fields[3] + fields[4]) / os.sysconf("SC_CLK_TCK")
