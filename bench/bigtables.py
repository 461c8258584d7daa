"""Large tables for the benches, written by the database itself. Run and step-run tables
for the retention and metrics benches, by
PostgreSQL (generate_series): a million step rows in well under a minute, where
the ORM would take many. The rows are shaped as the store leaves them."""

from django.db import connection

STEPS_PER_RUN = 10
RUNS_SQL = """
INSERT INTO automation_run (id, process_id, version_id, trigger, input, parameters, status,
                            result, created_at, started_at, finished_at)
SELECT md5(%(tag)s::text || g::text)::uuid, %(process)s, %(version)s, '{"type": "manual"}',
       '{"n": 1}', '{}', CASE WHEN g %% %(live_every)s = 0 THEN 'running' ELSE 'completed' END,
       '{"ok": true}', at, at,
       CASE WHEN g %% %(live_every)s = 0 THEN NULL ELSE at + interval '40 ms' END
FROM (SELECT g, now() - CASE WHEN g %% 100 < %(old_percent)s THEN interval '40 days'
                             ELSE interval '1 day' END - g * interval '1 ms' AS at
      FROM generate_series(%(first)s, %(last)s) AS g) AS s
"""
STEPS_SQL = """
INSERT INTO automation_steprun (run_id, step_id, step_type, scope, status, attempt, input,
                                output, error, logs, state, created_at, started_at,
                                finished_at, duration_ms)
SELECT r.id, 's' || k::text, 'function', '', 'completed', 1, '{"n": 1}', '{"ok": true}', NULL,
       '[{"message": "ran"}]', '{}', r.created_at, r.created_at, r.created_at,
       (abs(hashtext(r.id::text || k::text)) %% 3000)
FROM automation_run AS r CROSS JOIN generate_series(1, %(steps)s) AS k
WHERE r.id = ANY(SELECT md5(%(tag)s::text || g::text)::uuid
                 FROM generate_series(%(first)s, %(last)s) AS g)
"""


def seed(process, *, runs: int, start: int = 0, old_percent: int = 80,
         live_every: int = 100, tag: str = "bench") -> int:
    """`runs` runs of `process` numbered from `start`, STEPS_PER_RUN completed step runs
    each: `old_percent` % created 40 days ago, the rest a day ago; every `live_every`-th
    still running (retention must keep those). Returns the step rows written."""
    if connection.vendor != "postgresql":
        raise SystemExit("this bench needs PostgreSQL: python -m bench … --db postgres")
    written = 0
    for first in range(start, start + runs, 20_000):
        last = min(start + runs, first + 20_000) - 1
        params = {"tag": tag, "process": process.pk, "version": process.current_version_id,
                  "live_every": live_every, "old_percent": old_percent, "first": first,
                  "last": last, "steps": STEPS_PER_RUN}
        with connection.cursor() as cursor:
            cursor.execute(RUNS_SQL, params)
            cursor.execute(STEPS_SQL, params)
            written += cursor.rowcount
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE automation_run; ANALYZE automation_steprun")
    return written


# A million entities and their `entity.created` events for the saves bench
# (bench/scenarios/saves.py), written by the database itself: generate_series on
# PostgreSQL, a recursive CTE on SQLite. Events are dispatched, as the outbox leaves them.
# The ids ascend (the type's id, then the number) so each row is appended to the primary
# key's B-tree instead of landing at a random page: about twice as fast.
ENTITIES_SQL = {
    "postgresql": """
INSERT INTO entities_entity (id, entity_type_id, reference, status, data, unmet_requirements,
                             version, created_at, updated_at)
SELECT (lpad(to_hex(%(type)s), 8, '0') || lpad(to_hex(g), 24, '0'))::uuid, %(type)s,
       %(tag)s || lpad(g::text, 7, '0'), 'new',
       jsonb_build_object('n', g), '[]', 1, now() - g * interval '1 s', now() - g * interval '1 s'
FROM generate_series(%(first)s, %(last)s) AS g""",
    "sqlite": """
WITH RECURSIVE g(n) AS (SELECT %(first)s UNION ALL SELECT n + 1 FROM g WHERE n < %(last)s)
INSERT INTO entities_entity (id, entity_type_id, reference, status, data, unmet_requirements,
                             version, created_at, updated_at)
SELECT printf('%%08x%%024x', %(type)s, n), %(type)s, %(tag)s || substr('000000' || n, -7), 'new',
       json_object('n', n), '[]', 1, datetime('now', '-' || n || ' seconds'),
       datetime('now', '-' || n || ' seconds')
FROM g""",
}
EVENTS_SQL = """
INSERT INTO entities_entityevent (type, entity_id, entity_type_key, from_status, to_status,
                                  entered_statuses, changed_fields, snapshot, data, source,
                                  actor, occurred_at, created_at, dispatched_at, skipped)
SELECT 'entity.created', e.id, %(key)s, '', 'new', '["new"]', '[]', '{}', '{}', 'entity', '',
       e.created_at, e.created_at, e.created_at, '[]'
FROM entities_entity AS e
WHERE e.entity_type_id = %(type)s AND e.reference >= %(tag)s AND e.reference < %(tag_end)s"""


def entities_fill(entity_type, count: int, *, tag: str = "fill-", chunk: int = 250_000) -> int:
    """`count` more entities of `entity_type` (references `<tag>0000001`…) with one
    dispatched `entity.created` event each; returns the entities written."""
    vendor = connection.vendor
    params = {"tag": f"{entity_type.key}-{tag}", "type": entity_type.pk, "key": entity_type.key}
    params["tag_end"] = params["tag"][:-1] + chr(ord(params["tag"][-1]) + 1)
    with connection.cursor() as cursor:
        for first in range(1, count + 1, chunk):
            cursor.execute(ENTITIES_SQL[vendor],
                           {**params, "first": first, "last": min(count, first + chunk - 1)})
        cursor.execute(EVENTS_SQL, params)
        cursor.execute("ANALYZE entities_entity" if vendor == "postgresql" else "ANALYZE")
        if vendor == "postgresql":
            cursor.execute("ANALYZE entities_entityevent")
    return count
