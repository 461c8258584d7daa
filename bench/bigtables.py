"""Large run and step-run tables for the retention and metrics benches, written by
PostgreSQL itself (generate_series): a million step rows in well under a minute, where
the ORM would take many. The rows are shaped as the store leaves them."""

from django.db import connection

STEPS_PER_RUN = 10
RUNS_SQL = """
INSERT INTO automation_run (id, process_id, version_id, trigger, input, parameters, status,
                            result, created_at, started_at, finished_at)
SELECT md5(%(tag)s::text || g::text)::uuid, %(process)s, %(version)s, '{"type": "manual"}', '{"n": 1}',
       '{}', CASE WHEN g %% %(live_every)s = 0 THEN 'running' ELSE 'completed' END,
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
WHERE r.id = ANY(SELECT md5(%(tag)s::text || g::text)::uuid FROM generate_series(%(first)s, %(last)s) AS g)
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
