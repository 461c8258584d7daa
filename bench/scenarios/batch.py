"""batch_fanout_per_s, batch_done_per_s and batch_peak_rss_mb: a batch over every entity
of a type (100,000; 10,000 with --quick), each run one step.

`batch_create` (as the control panel calls it) records the batch; the fan-out task runs
in a real worker and creates the runs in chunks while the other worker already executes
their first steps.
- batch_fanout_per_s: runs created / (the batch's `fanned_out_at` - its `started_at`).
  The clock starts when the fan-out task takes the batch and stops when the fan-out has
  committed its last chunk (runs and step rows) and rung for its steps.
- batch_done_per_s: runs completed / (the last run's stored `finished_at` - the batch's
  `started_at`): every run created and completed. A batch not completed within the cap
  is reported at the rate it reached (and says so).
- batch_peak_rss_mb: the largest peak resident set (VmHWM) among the cluster's
  processes, sampled from the batch's start until its last run completed.
"""

import time

from bench import fixtures, profiling
from bench.procs import descendants, peak_rss_mb, qcluster, queue_purge

# The batch is given this long to fan out and complete; a slower one is reported at the
# rates it reached.
CAP_SECONDS = {True: 120, False: 900}


def run(opts) -> dict:
    from django.db.models import Max

    from automation.models import Batch, Run
    from automation.services.batches import batch_create

    size = 10_000 if opts.quick else 100_000
    entity_type = fixtures.entity_type_ensure("bench-batch")
    setup = time.perf_counter()
    fixtures.entities_bulk(entity_type, size)
    setup = time.perf_counter() - setup
    process = fixtures.process_create("bench-batch", entity_type=entity_type)
    queue_purge()
    cluster = qcluster(opts)
    sampler = profiling.sampler_start("worker-batch", cluster.pid) if opts.profile else None
    peaks: dict[int, float] = {}
    try:
        batch = batch_create(entity_type=entity_type, process=process)
        deadline = time.monotonic() + CAP_SECONDS[opts.quick]
        while time.monotonic() < deadline:
            for pid, peak in peak_rss_mb(descendants(cluster.pid)).items():
                peaks[pid] = max(peak, peaks.get(pid, 0.0))
            batch.refresh_from_db()
            fanning = batch.status in (Batch.Status.PENDING, Batch.Status.FANNING_OUT)
            if not fanning and not Run.objects.filter(batch=batch).exclude(
                    status__in=Run.FINISHED).exists():
                break
            time.sleep(0.2 if fanning else 1.0)
    finally:
        profiling.sampler_stop(sampler, "worker-batch", focus="batch_fanout")
        cluster.stop()
        queue_purge()
    batch.refresh_from_db()
    created = Run.objects.filter(batch=batch).count()
    completed = Run.objects.filter(batch=batch, status=Run.Status.COMPLETED).count()
    last = Run.objects.filter(batch=batch, status=Run.Status.COMPLETED).aggregate(
        t=Max("finished_at"))["t"]
    fanned = batch.fanned_out_at
    span = (fanned - batch.started_at).total_seconds() if fanned and batch.started_at else None
    done_span = (last - batch.started_at).total_seconds() if last and batch.started_at else None
    rate = created / span if span else None
    done_rate = completed / done_span if done_span else None
    peak = max(peaks.values()) if peaks else None
    rows = [
        (f"entities in the batch (bulk setup {setup:.1f} s)", f"{size:,}"),
        ("runs created, start to last chunk committed + rung",
         f"{created:,} in {span or 0:.2f} s" if span else f"{created:,}, fan-out not finished"),
        ("fan-out rate", f"{rate or 0:,.0f} runs/s"),
        ("runs completed, start to last run's finish",
         f"{completed:,} in {done_span or 0:.1f} s"),
        ("created and completed rate", f"{done_rate or 0:,.0f} runs/s"),
        ("peak RSS of any qcluster process", f"{peak or 0:.0f} MB"),
    ]
    if completed != size:
        rows.append(("batch not completed within the time cap",
                     f"{completed:,} of {size:,} after {CAP_SECONDS[opts.quick]} s; "
                     "rate so far"))
    return {"figures": {"batch_fanout_per_s": rate, "batch_done_per_s": done_rate,
                        "batch_peak_rss_mb": peak, "batch_size": size}, "rows": rows}
