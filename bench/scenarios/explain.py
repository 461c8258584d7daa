"""explain_ms_p50: explaining a change to one entity whose type has 1,000 processes
(docs/user-guide/explain.md; goal: under 50 ms)."""

import time

from django.db import transaction

from automation.models import ApiProcess, ProcessTrigger
from automation.services.explain import explain
from automation.services.processes import definition_validate, index_changed
from automation.triggers import events
from bench import fixtures
from bench.stats import median, percentile
from entities.models import Entity

PREFIX = "explain"
PROCESSES = 1000
TYPE_KEY = "bench-explain"


def _trigger(i: int) -> dict:
    """The processes of one type as a real shop might have them: most wait for statuses
    this change does not reach, a fifth listen to updates behind a condition of their own
    (one in ten of those holds, one in ten errors), a few have no entity trigger at all."""
    kind = i % 10
    if kind < 6:
        return {"type": "status", "config": {"entityType": TYPE_KEY,
                                             "status": ("done", "never")[i % 2]}}
    if kind < 8:
        condition = (f"entity.data.n > {1000000 + i}" if i % 100 not in (6, 16)
                     else "entity.data.n >= 0" if i % 100 == 6 else "entity.data.nope.deeper > 1")
        return {"type": "event", "config": {"eventType": "entity.updated",
                                            "entityType": TYPE_KEY}, "condition": condition}
    if kind < 9:
        return {"type": "event", "config": {"eventType": "entity.status_changed"},
                "condition": "entity.status == 'done'"}
    return {"type": "manual"}


def _processes(entity_type) -> None:
    steps = fixtures.steps_chain(3)
    for i in (0, 1, 6, 7, 8, 9, 16):
        definition_validate({"steps": steps, "triggers": [_trigger(i)]})
    fixtures.processes_write(PREFIX, range(PROCESSES), _trigger, steps,
                             entity_type=entity_type)


def run(quick: bool) -> dict:
    entity_type = fixtures.entity_type_ensure(TYPE_KEY)
    fixtures.entities_bulk(entity_type, 1)
    entity = Entity.objects.select_related("entity_type").get(entity_type=entity_type)
    _processes(entity_type)
    rounds = 60 if quick else 300
    explain(entity=entity, changes={"n": 1})  # warm: compiled expressions, cached graphs
    samples = []
    for i in range(rounds):
        started = time.perf_counter()
        answer = explain(entity=entity, changes={"n": i + 2})
        samples.append((time.perf_counter() - started) * 1000)
    starting = sum(1 for p in answer["processes"] if p["wouldStart"])
    if len(answer["processes"]) != PROCESSES or not starting:
        raise AssertionError("the explain mix is wrong: every process, some starting")
    with transaction.atomic():
        ProcessTrigger.objects.filter(process__slug__startswith=f"{PREFIX}-").delete()
        ApiProcess.objects.filter(slug__startswith=f"{PREFIX}-").update(enabled=False)
        index_changed()
    events.invalidate()
    p50 = median(samples)
    erring = sum(1 for p in answer["processes"]
                 if any(r["code"] == "condition_error" for r in p["reasons"]))
    rows = [
        (f"explain, one entity, {PROCESSES:,} processes of its type, p50", f"{p50:.1f} ms"),
        (f"explain, one entity, {PROCESSES:,} processes of its type, p99",
         f"{percentile(samples, 99):.1f} ms"),
        ("explain, fastest of the rounds (what the code costs on an idle core)",
         f"{min(samples):.1f} ms"),
        ("processes that would start / with a condition error", f"{starting} / {erring}"),
    ]
    return {"figures": {"explain_ms_p50": p50}, "rows": rows}
