"""python -m bench metrics [--quick] [--small N] [--large N]   (PostgreSQL)

The cost of a /metrics scrape at two table sizes (10,000 and 1,000,000 step rows by
default): scrapes through Django's test client, in this process, with the metrics
token; the median of 30 and the worst. For comparison, the histogram as it was computed
before (an aggregate over every step row) at the same sizes. Last line: one JSON object.
"""

import argparse
import json
import os
import statistics
import sys
import time

from bench.env import Options, database_create, database_drop, django_start

SCRAPES = 30


def _scrape_ms(client) -> list[float]:
    times = []
    for _ in range(SCRAPES + 3):
        started = time.perf_counter()
        response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer bench")
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return times[3:]  # the first ones warm caches up


def _full_scan_ms() -> float:
    """The histogram before: one aggregate over every finished step row."""
    from django.db.models import Count, Q, Sum

    from automation.api.metrics import BUCKETS_SECONDS
    from automation.models import StepRun

    started = time.perf_counter()
    StepRun.objects.filter(duration_ms__isnull=False).aggregate(
        total=Count("id"), sum_ms=Sum("duration_ms"),
        **{f"le_{i}": Count("id", filter=Q(duration_ms__lte=b * 1000))
           for i, b in enumerate(BUCKETS_SECONDS)})
    return (time.perf_counter() - started) * 1000


def measure(sizes: list[int]) -> list[dict]:
    from django.conf import settings
    from django.test import Client

    from automation.models import StepRun
    from bench import fixtures
    from bench.bigtables import STEPS_PER_RUN, seed

    settings.ENTITYFLOW_METRICS_TOKEN = "bench"
    process = fixtures.process_create("bench-metrics", steps=1)
    client, results, runs = Client(), [], 0
    for size in sizes:
        more = (size - StepRun.objects.count()) // STEPS_PER_RUN
        seed(process, runs=more, start=runs, tag="metrics")
        runs += more
        times = _scrape_ms(client)
        results.append({"step_rows": StepRun.objects.count(),
                        "scrape_median_ms": statistics.median(times),
                        "scrape_max_ms": max(times), "full_scan_ms": _full_scan_ms()})
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench metrics", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10,000 and 100,000 step rows")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    large = 100_000 if args.quick else args.large
    os.environ.setdefault("BENCH_POSTGRES_URL",
                          "postgres://postgres@127.0.0.1:5432/bench_entityflow_metrics")
    opts = Options(db="postgres")
    database_create(opts)
    try:
        django_start(opts)
        results = measure([args.small, large])
    finally:
        from django.db import connections

        connections.close_all()
        database_drop(opts)
    for row in results:
        print(f"{row['step_rows']:>10,} step rows: scrape median {row['scrape_median_ms']:.1f} ms, "
              f"max {row['scrape_max_ms']:.1f} ms; the old full-scan histogram alone "
              f"{row['full_scan_ms']:.1f} ms")
    ratio = results[1]["scrape_median_ms"] / results[0]["scrape_median_ms"]
    print(f"scrape time ratio (large / small): {ratio:.2f} (goal <= 2)")
    print(json.dumps({"metrics": results, "scrape_ratio": round(ratio, 3)}))
    return 0 if ratio <= 2 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
