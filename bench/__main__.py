"""python -m bench [--db sqlite|postgres] [--broker orm|redis] [--quick] [--profile]
[--only SCENARIO,...]    (python -m bench reliability|prune|metrics|soak|floor … run
bench/reliability.py, bench/retention.py, bench/metrics.py, bench/soak.py, bench/floor.py
instead)

Sets up a fresh database of its own, runs every scenario (real qcluster and gunicorn
subprocesses), prints a table, and as the last line one JSON object {"figures": {...}}.
"""

import argparse
import json
import os
import sys
import time
import traceback

from bench.env import Options, database_create, database_drop, django_start, machine

SCENARIOS = ("matching", "saves", "e2e", "latency", "batch", "api", "explain",
             "concurrency_overhead", "priority")


def _parse(argv: list[str]) -> tuple[Options, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--broker", choices=("orm", "redis"), default="orm")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (under 2 minutes)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the saves and the e2e workers (var/bench/profile/)")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of {', '.join(SCENARIOS)}")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return Options(db=args.db, broker=args.broker, quick=args.quick, profile=args.profile), only


def _scenario(name: str, opts: Options) -> dict:
    from bench.scenarios import (
        api,
        batch,
        concurrency,
        explain,
        latency,
        matching,
        priority,
        saves,
        throughput,
    )

    runners = {
        "matching": lambda: matching.run(opts.quick),
        "saves": lambda: saves.run(opts.quick, opts.profile),
        "e2e": lambda: throughput.run(opts),
        "latency": lambda: latency.run(opts),
        "batch": lambda: batch.run(opts),
        "api": lambda: api.run(opts),
        "explain": lambda: explain.run(opts.quick),
        "concurrency_overhead": lambda: concurrency.run(opts),
        "priority": lambda: priority.run(opts),
    }
    return runners[name]()


def main(argv: list[str]) -> int:
    if argv[:1] == ["reliability"]:  # the reliability harness has its own options and output
        from bench.reliability import main as reliability_main

        return reliability_main(argv[1:])
    if argv[:1] == ["prune"]:  # retention's prune under load (PostgreSQL)
        from bench.retention import main as prune_main

        return prune_main(argv[1:])
    if argv[:1] == ["soak"]:  # a steady mixed load for N minutes (PostgreSQL + Redis)
        from bench.soak import main as soak_main

        return soak_main(argv[1:])
    if argv[:1] == ["floor"]:  # the database floor of the e2e round (PostgreSQL)
        from bench.floor import main as floor_main

        return floor_main(argv[1:])
    if argv[:1] == ["metrics"]:  # the cost of a /metrics scrape as tables grow (PostgreSQL)
        from bench.metrics import main as metrics_main

        return metrics_main(argv[1:])
    from bench.report import KEYS, table

    opts, only = _parse(argv)
    figures: dict = dict.fromkeys(KEYS)
    rows: list[tuple[str, str, str]] = []
    failed = False
    began = time.monotonic()
    database_create(opts)
    try:
        django_start(opts)
        from bench.procs import quiesce

        quiesce()
        about = machine(opts)
        load_start = os.getloadavg()[0]
        for name in SCENARIOS:
            if name not in only:
                continue
            started = time.monotonic()
            print(f"[bench] {name} …", file=sys.stderr, flush=True)
            try:
                result = _scenario(name, opts)
            except Exception:  # one broken scenario must not hide the others' figures
                failed = True
                traceback.print_exc()
                rows.append((name, "FAILED", "see the traceback above"))
                continue
            finally:
                quiesce()
            figures.update({k: v for k, v in result["figures"].items() if k in figures})
            rows += [(name, label, value) for label, value in result["rows"]]
            # each scenario's figures as soon as it ends: a run stopped later keeps them
            print(f"[bench] {name} done in {time.monotonic() - started:.0f} s: "
                  f"{json.dumps({k: _rounded(v) for k, v in result['figures'].items()})}",
                  file=sys.stderr, flush=True)
    finally:
        from django.db import connections

        connections.close_all()
        database_drop(opts)
    rows.append(("total", "wall time", f"{time.monotonic() - began:.0f} s"))
    rows.append(("total", "other load on the machine (1-min load average, start / end)",
                 f"{load_start:.1f} / {os.getloadavg()[0]:.1f}"))
    print(table(figures, rows, about, opts.db, opts.broker))
    print(json.dumps({"figures": {k: _rounded(v) for k, v in figures.items()}}))
    return 1 if failed else 0


def _rounded(value):
    return round(value, 3) if isinstance(value, float) else value


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
