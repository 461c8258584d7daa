"""batch_fanout_per_s and batch_peak_rss_mb: a batch over every entity of a type.

`batch_create` (as the control panel calls it) records the batch; the fan-out task runs
in a real worker and creates the runs in chunks while the other worker already executes
their first steps. The rate is runs created from the fan-out's start to the last run's
creation; the memory figure is the largest peak resident set (VmHWM) among the cluster's
processes, sampled while the fan-out runs.
"""

import time

from bench import fixtures, profiling
from bench.procs import descendants, peak_rss_mb, qcluster, queue_purge

# The fan-out is given this long; a slower one is reported at the rate it reached.
CAP_SECONDS = {True: 15, False: 240}


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
            if batch.status not in (Batch.Status.PENDING, Batch.Status.FANNING_OUT):
                break
            time.sleep(0.2)
    finally:
        profiling.sampler_stop(sampler, "worker-batch", focus="batch_fanout")
        cluster.stop()
        queue_purge()
    created = Run.objects.filter(batch=batch).count()
    last = Run.objects.filter(batch=batch).aggregate(t=Max("created_at"))["t"]
    span = (last - batch.started_at).total_seconds() if last and batch.started_at else None
    rate = created / span if span else None
    peak = max(peaks.values()) if peaks else None
    rows = [
        (f"entities in the batch (bulk setup {setup:.1f} s)", f"{size:,}"),
        ("runs created by the fan-out", f"{created:,} in {span or 0:.1f} s"),
        ("fan-out rate", f"{rate or 0:,.0f} runs/s"),
        ("peak RSS of any qcluster process", f"{peak or 0:.0f} MB"),
    ]
    if created != size:
        rows.append(("fan-out not finished within the time cap",
                     f"{created:,} of {size:,} after {CAP_SECONDS[opts.quick]} s; rate so far"))
    return {"figures": {"batch_fanout_per_s": rate, "batch_peak_rss_mb": peak}, "rows": rows}
