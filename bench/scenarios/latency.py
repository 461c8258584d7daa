"""first_step_p50_ms / first_step_p99_ms / first_step_p99_ratio.

Under a steady 50 events/s, the time from a save's commit to the moment the database
applied the claim of its run's first step, against the time from enqueue to start of a bare
django-q2 task at the same rate on the same running cluster (a 1-step no-op process, so
both sides put 50 tasks/s on the workers; each half waits for its backlog to drain),
60 s of each kind (also in --quick: 3,000 samples) in four rounds.
The claim's time is the database's own clock read inside the claim statement (a trigger
the bench adds to the step-run table for this scenario only: `clock_timestamp()` on
PostgreSQL, `julianday('now')` on SQLite, whose resolution is a millisecond), not a time
the worker takes before it sends the statement. The commit time is taken by an on_commit
callback registered before the save, so it fires at the commit itself, before the outbox
dispatches the event. Bare and engine halves alternate (ABAB…), after a second of each
that is not counted (warm-up).
"""

import time

from django.db import transaction

from bench import fixtures
from bench.procs import qcluster, queue_purge
from bench.stats import paced, percentile, ratio, wait_until
from bench.tasks import marks_count, marks_read, marks_reset

RATE = 50.0
WARM_UP_SECONDS = 1.0
WARM_UP_SEQ = 10**6  # the warm-up's saves are numbered from here
# A p99 is the 30th-largest of 3,000 samples: with 1,500 (the 15th) the ratio of two
# runs of the same code differed by up to 0.4. Four rounds spread a change in the
# machine's speed over both kinds.
ROUNDS = 4
TRIGGER = {"type": "event", "config": {"eventType": "entity.updated", "entityType": "bench-lat"}}


def _bare_half(seconds: float, sent_before: int) -> int:
    from django_q.brokers import get_broker
    from django_q.tasks import async_task

    broker = get_broker()
    sent = 0
    for _ in paced(RATE, seconds):
        async_task("bench.tasks.bare", time.time(), broker=broker, save=False)
        sent += 1
    wait_until(lambda: marks_count() >= sent_before + sent, timeout=120, what="bare tasks")
    return sent


def _engine_half(seconds: float, entities: list, seq_start: int, commits: dict) -> int:
    from entities.services import entity_update

    sent = 0
    for i in paced(RATE, seconds):
        seq = seq_start + i
        with transaction.atomic():
            transaction.on_commit(lambda seq=seq: commits.__setitem__(seq, time.time()))
            entity_update(entity=entities[seq % len(entities)], data={"seq": seq})
        sent += 1
    return sent


def _drain(process, expected: int) -> float:
    """Wait until every run so far has finished, so no backlog spills into the next half;
    returns how long that took after the last save (near 0 when the workers kept up)."""
    from automation.models import Run

    started = time.monotonic()
    finished = Run.objects.filter(process=process, status__in=Run.FINISHED)
    wait_until(lambda: finished.count() >= expected, timeout=300, interval=0.05,
               what="runs to finish")
    return time.monotonic() - started


def claim_clock(install: bool) -> None:
    """Add (or remove) the trigger that notes, in the claim statement itself, when the
    database applied each claim of a pending step (unix seconds, the database's clock)."""
    from django.db import connection

    from automation.models import StepRun

    table = connection.ops.quote_name(StepRun._meta.db_table)
    if connection.vendor == "postgresql":
        statements = [
            f"DROP TRIGGER IF EXISTS bench_claim_at ON {table}",
            "DROP TABLE IF EXISTS bench_claim_at",
        ]
        if install:
            statements += [
                "CREATE TABLE bench_claim_at (step_run_id bigint PRIMARY KEY, "
                "at double precision NOT NULL)",
                "CREATE OR REPLACE FUNCTION bench_claim_at() RETURNS trigger AS $$ BEGIN "
                "INSERT INTO bench_claim_at VALUES (NEW.id, "
                "extract(epoch FROM clock_timestamp())) ON CONFLICT DO NOTHING; "
                "RETURN NULL; END $$ LANGUAGE plpgsql",
                f"CREATE TRIGGER bench_claim_at AFTER UPDATE ON {table} FOR EACH ROW "
                "WHEN (OLD.status = 'pending' AND NEW.status = 'running') "
                "EXECUTE FUNCTION bench_claim_at()",
            ]
    else:
        statements = ["DROP TRIGGER IF EXISTS bench_claim_at",
                      "DROP TABLE IF EXISTS bench_claim_at"]
        if install:
            statements += [
                "CREATE TABLE bench_claim_at (step_run_id INTEGER PRIMARY KEY, at REAL NOT NULL)",
                f"CREATE TRIGGER bench_claim_at AFTER UPDATE OF status ON {table} FOR EACH ROW "
                "WHEN OLD.status = 'pending' AND NEW.status = 'running' BEGIN "
                "INSERT OR IGNORE INTO bench_claim_at VALUES "
                "(NEW.id, (julianday('now') - 2440587.5) * 86400.0); END",
            ]
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def _engine_latencies(process, commits: dict) -> list[float]:
    from django.db import connection

    from automation.models import StepRun

    with connection.cursor() as cursor:
        cursor.execute("SELECT step_run_id, at FROM bench_claim_at")
        claimed = dict(cursor.fetchall())
    steps = StepRun.objects.filter(run__process=process).values_list("pk", "input")
    return [(claimed[pk] - commits[data["seq"]]) * 1000 for pk, data in steps
            if data["seq"] in commits and pk in claimed]  # not the warm-up's


def _warm_up(process, entities: list) -> int:
    """A second of each kind first, not counted: the workers' first engine steps import
    and compile what every later one reuses (the bare task has nothing to warm), and a
    steady load is what the figure is about. Returns the runs it started."""
    _bare_half(WARM_UP_SECONDS, 0)
    warm: dict[int, float] = {}
    _engine_half(WARM_UP_SECONDS, entities, WARM_UP_SEQ, warm)
    _drain(process, len(warm))
    marks_reset()
    return len(warm)


def run(opts) -> dict:
    from automation.services.processes import process_set_enabled

    seconds = 60.0  # of each kind: 3,000 samples, in --quick too (a p99 needs them)
    lat_type = fixtures.entity_type_ensure("bench-lat")
    fixtures.entities_bulk(lat_type, 200)
    entities = fixtures.entities_of(lat_type, 200)
    process = fixtures.process_create("bench-latency", triggers=[TRIGGER])
    queue_purge()
    marks_reset()
    claim_clock(install=True)
    commits: dict[int, float] = {}
    bare_sent, drains = 0, []
    cluster = qcluster(opts)
    try:
        warm_runs = _warm_up(process, entities)
        for _ in range(ROUNDS):
            bare_sent += _bare_half(seconds / ROUNDS, bare_sent)
            _engine_half(seconds / ROUNDS, entities, len(commits), commits)
            drains.append(_drain(process, warm_runs + len(commits)))
        engine = _engine_latencies(process, commits)
    finally:
        cluster.stop()
        claim_clock(install=False)
    bare = [(started - enqueued) * 1000 for enqueued, started, _ in marks_read()]
    process_set_enabled(process=process, enabled=False)
    p99 = percentile(engine, 99)
    rows = [
        (f"bare task enqueue→start p50 / p99 ({len(bare)} tasks)",
         f"{percentile(bare, 50):.1f} / {percentile(bare, 99):.1f} ms"),
        (f"save commit→first step's claim applied p50 / p99 ({len(engine)} events)",
         f"{percentile(engine, 50):.1f} / {p99:.1f} ms"),
        ("backlog left after each engine half (drain time)",
         " / ".join(f"{d:.1f} s" for d in drains)),
    ]
    return {"figures": {"first_step_p50_ms": percentile(engine, 50), "first_step_p99_ms": p99,
                        "first_step_p99_ratio": ratio(p99, percentile(bare, 99))},
            "rows": rows,
            "detail": {"bare_p50": percentile(bare, 50), "bare_p99": percentile(bare, 99)}}
