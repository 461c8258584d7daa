"""python -m bench prune [--quick] [--steps N] [--chunk N] [--broker orm|redis]   (PostgreSQL)

Retention's prune on a large table while runs keep executing. Seeds N step rows (default
1,000,000; --quick 100,000) in runs of 10 steps: 80 % finished 40 days ago (to go), every
100th still running (to stay), the rest a day old (to stay). A qcluster runs 3-step
processes started at 20/s throughout: 10 s alone, then during the prune, then 5 s after.
Measured: the longest any backend waited for a lock (pg_locks.waitstart, sampled every
20 ms), the run times of the load alone and during the prune, the prune's rate and its
longest chunk; checked: exactly what retention says is gone. Last line: one JSON object.
"""

import argparse
import json
import os
import sys
import threading
import time

from bench.env import Options, database_create, database_drop, django_start
from bench.stats import paced, percentile, wait_until

RATE = 20.0
LOCK_SQL = ("SELECT coalesce(max(extract(epoch FROM clock_timestamp() - waitstart)), 0) "
            "FROM pg_locks WHERE NOT granted AND waitstart IS NOT NULL")


class Sampler(threading.Thread):
    """The longest lock wait seen in pg_locks, on a connection of its own."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop, self.longest, self.samples = threading.Event(), 0.0, 0

    def run(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            while not self.stop.is_set():
                cursor.execute(LOCK_SQL)
                self.longest = max(self.longest, float(cursor.fetchone()[0]))
                self.samples += 1
                time.sleep(0.02)
        connection.close()


class Load(threading.Thread):
    """Runs started through the service at RATE per second until stopped."""

    def __init__(self, process):
        super().__init__(daemon=True)
        self.process, self.stop, self.started = process, threading.Event(), 0

    def run(self) -> None:
        from django.db import connection

        from automation.services.runs import run_start

        for _ in paced(RATE, 3600):
            if self.stop.is_set():
                break
            run_start(process=self.process, trigger={"type": "manual"}, input={"load": True})
            self.started += 1
        connection.close()


def _run_ms(process, since, until) -> list[float]:
    from automation.models import Run

    runs = Run.objects.filter(process=process, created_at__gte=since, created_at__lt=until)
    return [(done - made).total_seconds() * 1000
            for made, done in runs.values_list("created_at", "finished_at") if done]


def _expected(seeded_process) -> dict:
    from datetime import timedelta

    from django.utils import timezone

    from automation.models import Run

    old = Run.objects.filter(process=seeded_process,
                             created_at__lt=timezone.now() - timedelta(days=30))
    return {"old_finished": old.filter(status__in=Run.FINISHED).count(),
            "old_live": old.exclude(status__in=Run.FINISHED).count(),
            "young": Run.objects.filter(process=seeded_process).count() - old.count()}


def measure(opts: Options, steps: int, chunk: int) -> dict:
    from django.db import connection
    from django.utils import timezone
    from django_q.models import Schedule

    from automation.models import StepRun
    from automation.services.retention import prune
    from bench import fixtures
    from bench.bigtables import STEPS_PER_RUN, seed
    from bench.procs import qcluster

    Schedule.objects.filter(name="entityflow-prune").delete()  # this bench prunes itself
    seeded = fixtures.process_create("bench-seeded", steps=1)
    began = time.monotonic()
    seed(seeded, runs=steps // STEPS_PER_RUN, tag="prune")
    seconds_to_seed = time.monotonic() - began
    before = _expected(seeded)
    load_process = fixtures.process_create("bench-load", steps=3)
    cluster = qcluster(opts)
    sampler, load = Sampler(), Load(load_process)
    try:
        sampler.start()
        load.start()
        t_alone = timezone.now()
        time.sleep(10)
        t_prune, chunk_times, last = timezone.now(), [], [time.monotonic()]

        def progress(kind: str, done: int) -> None:
            chunk_times.append(time.monotonic() - last[0])
            last[0] = time.monotonic()

        began = time.monotonic()
        deleted = prune(chunk=chunk, progress=progress)
        prune_seconds = time.monotonic() - began
        t_after = timezone.now()
        time.sleep(5)
        load.stop.set()
        load.join()
        wait_until(lambda: not StepRun.objects.filter(status__in=StepRun.ACTIVE,
                                                      run__process=load_process).exists(),
                   timeout=120, what="the load's runs to finish")
    finally:
        sampler.stop.set()
        sampler.join()
        cluster.stop()
    after = _expected(seeded)
    alone, during = _run_ms(load_process, t_alone, t_prune), _run_ms(load_process, t_prune, t_after)
    figures = {
        "step_rows_seeded": steps, "seed_seconds": round(seconds_to_seed, 1),
        "runs_deleted": deleted["runs"], "steps_deleted": deleted["steps"],
        "prune_seconds": round(prune_seconds, 1),
        "steps_deleted_per_s": round(deleted["steps"] / prune_seconds) if prune_seconds else None,
        "chunks": len(chunk_times), "longest_chunk_ms": round(max(chunk_times) * 1000, 1),
        "longest_lock_wait_ms": round(sampler.longest * 1000, 1),
        "lock_samples": sampler.samples,
        "load_runs_alone": len(alone), "load_runs_during": len(during),
        "run_p99_ms_alone": round(percentile(alone, 99), 1),
        "run_p99_ms_during": round(percentile(during, 99), 1),
        "run_max_ms_during": round(max(during), 1) if during else None,
        "correct": (after["old_finished"] == 0 and after["old_live"] == before["old_live"]
                    and after["young"] == before["young"]
                    and deleted["runs"] == before["old_finished"]),
    }
    connection.close()
    return figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench prune", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100,000 step rows")
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=1000, help="runs per transaction")
    parser.add_argument("--broker", choices=("orm", "redis"), default="orm")
    args = parser.parse_args(argv)
    os.environ.setdefault("BENCH_POSTGRES_URL",
                          "postgres://postgres@127.0.0.1:5432/bench_entityflow_prune")
    opts = Options(db="postgres", broker=args.broker)
    database_create(opts)
    try:
        django_start(opts)
        figures = measure(opts, 100_000 if args.quick else args.steps, args.chunk)
    finally:
        from django.db import connections

        connections.close_all()
        database_drop(opts)
    for key, value in figures.items():
        print(f"{key:<24} {value}")
    print(json.dumps({"prune": figures}))
    return 0 if figures["correct"] and figures["longest_lock_wait_ms"] < 1000 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
