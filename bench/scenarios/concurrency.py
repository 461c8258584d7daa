"""concurrency_overhead: runs/s of a 3-step no-op process with a per-entity concurrency
limit of 1 (docs/user-guide/concurrency.md) over distinct entities, so no run ever
waits for another, against the same process without a limit, on the same workers,
broker and database: what the gate itself costs (its row, the count of running runs at a
start, the gate row's lock and mark read at a run's end). Measured as the e2e scenario measures runs
(bench.scenarios.throughput), rounds alternating ABAB, medians compared; the figure is
no-limit ÷ limited (goal <= 1.2)."""

import time

from bench import fixtures
from bench.scenarios.throughput import STEPS, _engine_round
from bench.stats import median, ratio


def run(opts) -> dict:
    runs, rounds = (100, 1) if opts.quick else (400, 3)
    entity_type = fixtures.entity_type_ensure("bench-gated")
    fixtures.entities_bulk(entity_type, runs * rounds * 2)
    entities = fixtures.entities_of(entity_type, runs * rounds * 2)
    free = fixtures.process_create("bench-ungated", steps=STEPS, entity_type=entity_type)
    gated = fixtures.process_create("bench-gated", steps=STEPS, entity_type=entity_type,
                                    concurrency={"limit": 1})
    plain, limited = [], []
    for r in range(rounds):
        mine = entities[r * runs * 2:(r + 1) * runs * 2]  # distinct entities every round
        plain.append(_engine_round(opts, free, runs, None, mine[:runs])["runs_per_s"])
        time.sleep(0.5)
        limited.append(_engine_round(opts, gated, runs, None, mine[runs:])["runs_per_s"])
        time.sleep(0.5)
    overhead = ratio(median(plain), median(limited))
    rows = [
        (f"3-step no-op runs/s, no limit ({runs} entities)", f"{median(plain):.1f}/s"),
        (f"the same with concurrency limit 1 per entity ({runs} entities)",
         f"{median(limited):.1f}/s"),
        ("no limit ÷ limited", f"{overhead:.2f}"),
    ]
    return {"figures": {"concurrency_overhead": overhead}, "rows": rows,
            "detail": {"plain": plain, "limited": limited}}
