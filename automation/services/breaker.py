"""The circuit breaker of a process (docs/user-guide/operating-runs.md#circuit-breaker).

Every start of a run by a trigger (an event, a status, a schedule, a webhook, a manual
or API start) asks `admit` first. A process whose starts break a threshold is paused:
the start that broke it and every later one is recorded as a held start (not lost),
staff see a banner in the admin, and a `process.paused` webhook fires. A person resumes
the process (services.runs.process_resume) and releases the held starts (they start
now, on the current version) or discards them. Re-runs, retries and batches are operator
actions and are not held.

Thresholds (DEFAULTS, overridable per process in `ProcessBreaker.limits`, 0 = off):
- `perEntityPerMinute`: runs of the process for one entity in the last minute. This is
  what stops a self-trigger loop (a step updating its own entity, which starts the same
  process again) within that many runs.
- `perMinute`: runs of the process in the last minute, whatever the entity.
- `errorRate` over `errorWindowMinutes`, once at least `errorMinRuns` runs finished in
  the window: the share of them that failed.
The overall and error-rate counts are read at most once a second per worker process
(they cost a range scan); the per-entity count and the paused flag on every start.
"""

import logging
import time
from datetime import timedelta
from functools import lru_cache

from django.db import connections, router, transaction
from django.db.models import Q
from django.utils import timezone

from automation.exceptions import RunStateError
from automation.models import ApiProcess, HeldStart, ProcessBreaker, Run
from automation.services import notifications
from automation.store.pauses import forget
from entities.db import driver
from entities.db.compiled import CompiledLookup

logger = logging.getLogger(__name__)

DEFAULTS = {
    "perEntityPerMinute": 30,
    "perMinute": 20000,
    "errorRate": 0.95,
    "errorWindowMinutes": 10,
    "errorMinRuns": 200,
}
WIDE_EVERY_SECONDS = 1.0
_wide_checked: dict[int, float] = {}  # process id -> monotonic time of its last wide check


class ProcessPausedError(RunStateError):
    code = "process_paused"
    default_message = "The process is paused by its circuit breaker; the start was held."

    def __init__(self, message: str | None = None, *, held: HeldStart | None = None):
        super().__init__(message, fields={})
        self.held = held


def limits_of(breaker: ProcessBreaker | None) -> dict:
    overrides = breaker.limits if breaker is not None and isinstance(breaker.limits, dict) else {}
    return {key: overrides.get(key, value) for key, value in DEFAULTS.items()}


def limits_set(*, process: ApiProcess, limits: dict) -> ProcessBreaker:
    """Override thresholds for one process (keys of DEFAULTS; numbers, 0 = off)."""
    bad = {key: ["Not a threshold."] for key in (limits if isinstance(limits, dict) else {})
           if key not in DEFAULTS}
    if not isinstance(limits, dict) or bad or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
            for v in limits.values()):
        raise RunStateError(
            f"Thresholds are an object of non-negative numbers with keys {', '.join(DEFAULTS)}.",
            fields=bad or {"limits": ["Non-negative numbers only."]})
    breaker, _ = ProcessBreaker.objects.get_or_create(process=process)
    ProcessBreaker.objects.filter(pk=breaker.pk).update(limits=limits)
    breaker.refresh_from_db()
    return breaker


_READ_WITH_PROCESS = "_breaker_read_with_process"


def breaker_read_with(process: ApiProcess) -> ApiProcess:
    """Mark `process`, just read with select_related("breaker"), so breaker_of uses that
    row instead of reading it again (the API's trigger: one round trip fewer per start).
    Only for an instance read in this request: a long-lived one would keep a stale
    breaker, which is why the relation's own cache is not trusted."""
    if ApiProcess.breaker.is_cached(process):
        setattr(process, _READ_WITH_PROCESS, ApiProcess.breaker.related.get_cached_value(process))
    return process


# Read on every start a trigger makes (admit): compiled once, as Django's ORM spent more
# CPU building these two queries than the database answering them (docs/performance.md,
# "Saves that start a run").
_BREAKER = CompiledLookup(lambda pk: ProcessBreaker.objects.filter(process_id=pk), marker=-1)


def breaker_of(process: ApiProcess) -> ProcessBreaker | None:
    if _READ_WITH_PROCESS in process.__dict__:
        return process.__dict__[_READ_WITH_PROCESS]
    return _BREAKER.first(process.pk)


def _started_for_entity(process: ApiProcess, entity, since) -> int:
    """Runs of `process` for `entity` created at or after `since`: the count
    `Run.objects.filter(process_id=…, entity_id=…, created_at__gte=since).count()`,
    its SQL built once per database (the run index on (entity, created_at) answers it)."""
    using = router.db_for_read(Run)
    connection = connections[using]
    fields = Run._meta
    entity_field, created = fields.get_field("entity"), fields.get_field("created_at")
    params = (fields.get_field("process").get_db_prep_value(process.pk, connection),
              entity_field.get_db_prep_value(entity.pk, connection),
              created.get_db_prep_value(since, connection))
    if connection.vendor == "sqlite":  # on every start a save makes: past Django's cursor
        return driver.execute(_started_sql(using), params, using=using).fetchone()[0]
    with connection.cursor() as cursor:
        cursor.execute(_started_sql(using), params)
        return cursor.fetchone()[0]


@lru_cache(maxsize=8)
def _started_sql(using: str) -> str:
    qn = connections[using].ops.quote_name
    fields = Run._meta
    column = {name: qn(fields.get_field(name).column)
              for name in ("process", "entity", "created_at")}
    return (f"SELECT COUNT(*) FROM {qn(fields.db_table)} "  # noqa: S608 - quoted names only
            f"WHERE {column['process']} = %s AND {column['entity']} = %s "
            f"AND {column['created_at']} >= %s")


def admit(*, process: ApiProcess, entity=None, hold: dict | None = None) -> None:
    """Let a start through, or hold it: with `hold` (run_start's arguments) the held
    start is recorded and ProcessPausedError raised; without, only the error."""
    breaker = breaker_of(process)
    if breaker is not None and breaker.paused:
        _refuse(process, breaker, hold)
    reason = _breach(process, entity, limits_of(breaker))
    if reason:
        breaker = pause(process=process, reason=reason)
        _refuse(process, breaker, hold)


def _breach(process: ApiProcess, entity, limits: dict) -> str:
    now = timezone.now()
    minute_ago = now - timedelta(minutes=1)
    per_entity = int(limits["perEntityPerMinute"] or 0)
    if per_entity and entity is not None:
        started = _started_for_entity(process, entity, minute_ago)
        if started >= per_entity:
            return (f"{started} runs for entity {entity.reference} in the last minute "
                    f"(perEntityPerMinute {per_entity}): a loop that re-triggers itself?")
    last = _wide_checked.get(process.pk)
    if last is not None and time.monotonic() - last < WIDE_EVERY_SECONDS:
        return ""
    _wide_checked[process.pk] = time.monotonic()
    per_minute = int(limits["perMinute"] or 0)
    if per_minute:
        # every status named: the (process, status, created_at) index then answers alone
        started = Run.objects.filter(process_id=process.pk, status__in=Run.Status.values,
                                     created_at__gte=minute_ago
                                     ).order_by().values("pk")[:per_minute].count()
        if started >= per_minute:
            return f"{started} runs in the last minute (perMinute {per_minute})"
    rate, least = float(limits["errorRate"] or 0), int(limits["errorMinRuns"] or 0)
    if rate:
        window = now - timedelta(minutes=float(limits["errorWindowMinutes"] or 10))
        finished = Run.objects.filter(process_id=process.pk, finished_at__gte=window,
                                      status__in=(Run.Status.COMPLETED, Run.Status.FAILED))
        total = finished.count()
        if total and total >= least:
            failed = finished.filter(status=Run.Status.FAILED).count()
            if failed / total >= rate:
                return (f"{failed} of {total} runs failed in the last "
                        f"{limits['errorWindowMinutes']} minutes (errorRate {rate:g})")
    return ""


def _refuse(process: ApiProcess, breaker: ProcessBreaker, hold: dict | None):
    held = None
    if hold is not None:
        key = hold.get("idempotency_key")
        held = HeldStart.objects.filter(process=process, idempotency_key=key,
                                        status=HeldStart.Status.HELD).first() if key else None
        if held is None:
            held = HeldStart.objects.create(
                process=process, entity=hold.get("entity"), event=hold.get("event"),
                trigger=hold.get("trigger") or {}, input=hold.get("input"),
                parameters=hold.get("parameters") or {}, idempotency_key=key)
    raise ProcessPausedError(
        f"The process '{process.slug}' is paused by its circuit breaker ({breaker.reason}); "
        f"the start was held" + (f" (held start {held.pk})." if held else "."), held=held)


def pause(*, process: ApiProcess, reason: str) -> ProcessBreaker:
    """Pause the process (once: a second breach while paused changes nothing) and fire
    `process.paused` to the webhook subscribers in the same transaction."""
    with transaction.atomic():
        breaker, _ = ProcessBreaker.objects.get_or_create(process=process)
        newly = ProcessBreaker.objects.filter(pk=breaker.pk, paused_at__isnull=True).update(
            paused_at=timezone.now(), reason=reason[:1000])
        breaker.refresh_from_db()
        if newly:
            logger.warning("process %s paused by its circuit breaker: %s", process.slug, reason)
            notifications.notify("process.paused", {
                "event": "process.paused", "workflowDefinitionId": process.slug,
                "reason": breaker.reason, "pausedAt": breaker.paused_at.isoformat()})
    return breaker


def process_pause(*, process: ApiProcess, reason: str) -> ProcessBreaker:
    """A person pauses the process (the admin, the API): its new starts are held and its
    running runs stop at their next step (store.pauses) until it is resumed
    (services.runs.process_resume). Pausing a paused process changes nothing."""
    breaker = pause(process=process, reason=reason or "paused by a person")
    forget()
    return breaker


def processes_pause_all(*, reason: str) -> int:
    """Pause every process that is not paused yet; how many were."""
    paused = set(ProcessBreaker.objects.filter(paused_at__isnull=False)
                 .values_list("process_id", flat=True))
    count = 0
    for process in ApiProcess.objects.exclude(pk__in=paused):
        pause(process=process, reason=reason or "all processes paused by a person")
        count += 1
    forget()
    return count


def resume(*, process: ApiProcess) -> ProcessBreaker:
    """Unpause (services.runs.process_resume decides what happens to the held starts)."""
    breaker = breaker_of(process)
    if breaker is None or not breaker.paused:
        raise RunStateError(f"The process '{process.slug}' is not paused.")
    _wide_checked.pop(process.pk, None)
    ProcessBreaker.objects.filter(pk=breaker.pk).update(paused_at=None, resumed_at=timezone.now())
    breaker.refresh_from_db()
    forget()
    return breaker


def paused_processes():
    """What the admin banner lists: paused processes with how many starts they hold."""
    from django.db.models import Count

    return (ProcessBreaker.objects.filter(paused_at__isnull=False).select_related("process")
            .annotate(held=Count("process__held_starts",
                                 filter=Q(process__held_starts__status=HeldStart.Status.HELD))))
