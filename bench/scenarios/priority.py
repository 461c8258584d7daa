"""priority_start_ms: how soon a high-priority run starts while a low-priority batch of
20,000 entities is running on the 2 workers (docs/user-guide/priority.md).

The batch (a 1-step no-op process, batch priority low) is created as the control panel
creates it; once it has fanned out and the workers are taking its steps with at least
2,000 of them still queued, a 1-step no-op process of priority high is started through
`run_start` (as the API starts it), one run at a time, SAMPLES times (SAMPLES_QUICK with
--quick), 0.5 s apart. Each sample is the time from the high run's commit to the moment
the database applied the claim of its first step: the same two clocks as first_step
(bench.scenarios.latency): the commit by an on_commit callback registered before the
start (so before its doorbell is sent), the claim by the trigger that notes the
database's own clock inside the claim statement. The figure is the slowest sample (the
promise is "within 1 s", each time); the table also gives the median, how many of the
batch's steps were claimed between a high run's commit and its claim (a chunk doorbell
claims its steps together, in one statement: engine.chunks) and how many of them
finished in between (their stored `finished_at`, the worker's clock). A sample is
taken only while at least MIN_QUEUED of the batch's steps are still queued, so every
sample is taken behind a full queue; fewer samples than asked are reported as such.
The batch itself is not waited for: the cluster is stopped and the rest of it cancelled
between scenarios (bench.procs.quiesce).
"""

import time

from django.db import transaction

from bench import fixtures
from bench.procs import qcluster, queue_purge
from bench.scenarios.latency import claim_clock
from bench.stats import median, wait_until

SIZE = 20_000
SAMPLES, SAMPLES_QUICK = 20, 5
QUEUED_BEFORE = 2000  # the batch's steps queued before the first sample
MIN_QUEUED = 1000  # … and before each one
GAP_SECONDS = 0.5


def _claims_between(since: float, until: float) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM bench_claim_at WHERE at > %s AND at < %s",
                       [since, until])
        return cursor.fetchone()[0]


def _claimed_at(step_run_id: int) -> float | None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT at FROM bench_claim_at WHERE step_run_id = %s", [step_run_id])
        row = cursor.fetchone()
    return row[0] if row else None


def _finished_between(batch, since: float, until: float) -> int:
    from datetime import UTC, datetime

    from automation.models import StepRun

    return StepRun.objects.filter(
        run__batch=batch, finished_at__gt=datetime.fromtimestamp(since, UTC),
        finished_at__lt=datetime.fromtimestamp(until, UTC)).count()


def _sample(urgent, batch) -> tuple[float, int, int]:
    """One high run started and its first step's claim waited for: (ms, batch steps
    claimed in between, batch steps finished in between)."""
    from automation.models import ApiProcess, StepRun
    from automation.services.runs import run_start

    committed: list[float] = []
    process = ApiProcess.objects.get(pk=urgent.pk)
    with transaction.atomic():
        transaction.on_commit(lambda: committed.append(time.time()))
        run, _ = run_start(process=process, trigger={"type": "manual"})
    step_run_id = StepRun.objects.filter(run=run).values_list("pk", flat=True).get()
    claimed = wait_until(lambda: _claimed_at(step_run_id), timeout=60, interval=0.02,
                         what="the high run's first claim")
    return ((claimed - committed[0]) * 1000, _claims_between(committed[0], claimed),
            _finished_between(batch, committed[0], claimed))


def run(opts) -> dict:
    from automation.models import Batch, Run, StepRun
    from automation.services.batches import batch_create
    from automation.store.doorbell import queued_steps

    samples_wanted = SAMPLES_QUICK if opts.quick else SAMPLES
    entity_type = fixtures.entity_type_ensure("bench-prio")
    fixtures.entities_bulk(entity_type, SIZE)
    bulk = fixtures.process_create("bench-prio-low", entity_type=entity_type)
    urgent = fixtures.process_create("bench-prio-high", priority="high")
    queue_purge()
    claim_clock(install=True)
    times, between, finished_between, queued = [], [], [], []
    cluster = qcluster(opts)
    try:
        batch = batch_create(entity_type=entity_type, process=bulk, priority="low")
        done = StepRun.objects.filter(run__batch=batch, status=StepRun.Status.COMPLETED)
        wait_until(lambda: Batch.objects.filter(pk=batch.pk).exclude(fanned_out_at=None)
                   .exists() and done.count() >= 100 and queued_steps() >= QUEUED_BEFORE,
                   timeout=300, interval=0.2, what="the batch to be under way, its steps queued")
        for _ in range(samples_wanted):
            waiting = queued_steps()
            if waiting < MIN_QUEUED:
                break
            ms, claims, ran = _sample(urgent, batch)
            times.append(ms)
            between.append(claims)
            finished_between.append(ran)
            queued.append(waiting)
            time.sleep(GAP_SECONDS)
        finished = Run.objects.filter(batch=batch, status__in=Run.FINISHED).count()
    finally:
        cluster.stop()
        claim_clock(install=False)
    worst = max(times) if times else None
    rows = [
        ("low-priority batch: entities; its runs finished when sampling ended",
         f"{SIZE:,}; {finished:,}"),
        (f"high run commit→first step's claim applied: slowest / median ({len(times)} runs)",
         f"{worst or 0:.0f} / {median(times) if times else 0:.0f} ms"),
        ("batch steps claimed between a high run's commit and its claim: most / median",
         f"{max(between, default=0)} / {median(between) if between else 0:.0f}"),
        ("… of them finished in between (a chunk's steps are claimed together): most / median",
         f"{max(finished_between, default=0)} / "
         f"{median(finished_between) if finished_between else 0:.0f}"),
        ("batch steps queued when each high run started: fewest / most",
         f"{min(queued, default=0):,} / {max(queued, default=0):,}"),
    ]
    if len(times) < samples_wanted:
        rows.append(("fewer samples than asked: the batch's queue ran below "
                     f"{MIN_QUEUED:,} steps", f"{len(times)} of {samples_wanted}"))
    return {"figures": {"priority_start_ms": worst}, "rows": rows,
            "detail": {"times_ms": times, "between": between,
                       "finished_between": finished_between, "queued": queued}}
