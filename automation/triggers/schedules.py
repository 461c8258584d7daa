"""Schedule triggers as django-q2 `Schedule` rows, one per (process, trigger position).

Why not django-q2's own cron schedules: it evaluates cron in one fixed zone, so a
"09:00 America/New_York" job would drift by an hour across every DST change. Instead each
row is a ONCE schedule (`repeats=1`) whose `next_run` we compute in the trigger's own
zone. When django-q2's scheduler fires it, `fire` starts the run and re-arms the same row
for the next local occurrence.

Cron, time zone and the local-time rules (a skipped time runs an hour later, a repeated
one once) live with the definition (automation.definitions.schedule_config), which
refuses at save time what could not be scheduled here.

The rows are identified by `func` and `args` (process id, position); `name` is a label
for the admin (`entityflow:<slug>:<position>`).
"""

import logging
from collections import defaultdict
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from django.db import DatabaseError, router, transaction
from django.db.models import F
from django.utils import timezone
from django_q.models import Schedule

from automation.definitions.schedule_config import (
    ScheduleConfigError,
    timezone_name,
    trigger_next_occurrence,
)
from automation.definitions.scope import expression_scope
from automation.triggers.conditions import condition_holds

logger = logging.getLogger(__name__)

# django-q2 Schedule rows store this path: it must keep naming `fire` in this module.
FIRE = "automation.triggers.schedules.fire"
SYNC_ATTEMPTS = 3


# --- Keeping the Schedule rows in step with the triggers --------------------------------

def schedule_args(process_id: int, position: int) -> str:
    return repr((int(process_id), int(position)))


def schedule_name(slug: str, position: int) -> str:
    suffix = f":{position}"
    return f"entityflow:{slug}"[: 100 - len(suffix)] + suffix


def _key(args: str | None) -> tuple[int, int] | None:
    try:
        process_id, position = (int(part) for part in (args or "").strip("() ").split(","))
    except ValueError:
        return None
    return process_id, position


def sync_schedules(*, now: datetime | None = None) -> dict[str, int]:
    """Make the Schedule rows match the enabled processes' schedule triggers.

    Runs on commit after every process change and is idempotent: it creates missing rows,
    re-arms changed or spent ones, and deletes rows of removed triggers, disabled or
    deleted processes, and duplicates. It never raises: it runs after a commit that has
    already succeeded, so a failure (after retries) is logged and the next sync repairs.
    """
    for attempt in range(1, SYNC_ATTEMPTS + 1):
        try:
            return _sync_all(now or timezone.now())
        except DatabaseError:  # e.g. a deadlock with the scheduler: try again
            if attempt == SYNC_ATTEMPTS:
                logger.exception("schedule sync failed %s times", attempt)
        except Exception:
            logger.exception("schedule sync failed")
            break
    return {"created": 0, "updated": 0, "deleted": 0}


def _sync_all(now: datetime) -> dict[str, int]:
    from automation.models import IndexStamp, ProcessTrigger

    counts = {"created": 0, "updated": 0, "deleted": 0}
    # The schedule rows live where django-q2's tables do (on SQLite the queue's own file,
    # config/queue.py): their writes are one transaction there too.
    with transaction.atomic(), transaction.atomic(using=router.db_for_write(Schedule)):
        # One sync at a time, so two concurrent saves cannot both create a row. Schedule
        # rows are not locked up front: the scheduler locks due rows in its own order.
        list(IndexStamp.objects.select_for_update().filter(pk=1).values_list("pk", flat=True))
        wanted = {(t.process_id, t.position): t for t in ProcessTrigger.objects.filter(
            type=ProcessTrigger.Type.SCHEDULE, process__enabled=True).select_related("process")}
        rows: dict = defaultdict(list)
        for row in Schedule.objects.filter(func=FIRE).order_by("pk"):
            rows[_key(row.args)].append(row)
        for key, found in rows.items():
            extra = found if key not in wanted else found[1:]
            if extra:
                doomed = Schedule.objects.filter(pk__in=[r.pk for r in extra])
                counts["deleted"] += doomed.delete()[0]
        for key, trigger in wanted.items():
            outcome = _sync_one(trigger, rows.get(key, [None])[0], now)
            if outcome:
                counts[outcome] += 1
    return counts


def _sync_one(trigger, row: Schedule | None, now: datetime) -> str | None:
    try:
        due = trigger_next_occurrence(trigger.config, after=now)
    except ScheduleConfigError as exc:
        logger.warning("schedule trigger %s:%s not scheduled: %s",
                       trigger.process.slug, trigger.position, exc)
        if row is not None:
            row.delete()
            return "deleted"
        return None
    target = {"name": schedule_name(trigger.process.slug, trigger.position),
              "cron": trigger.config["cron"].strip(), "schedule_type": Schedule.ONCE,
              "intended_date_kwarg": "scheduled_for"}
    if row is None:
        Schedule.objects.create(func=FIRE, args=schedule_args(trigger.process_id, trigger.position),
                                repeats=1, next_run=due, **target)
        return "created"
    spent = row.repeats == 0 or row.next_run is None
    if not spent and row.next_run <= now:
        return None  # due: the scheduler is about to fire it (and may hold its lock)
    # An armed row in the future that is not the next occurrence: the cron or zone changed.
    moved = not spent and row.next_run != due
    if spent or moved:
        target.update(next_run=due, repeats=1)
    changed = {key: value for key, value in target.items() if getattr(row, key) != value}
    if not changed:
        return None
    Schedule.objects.filter(pk=row.pk).update(**changed)
    return "updated"


def next_run_for(process) -> datetime | None:
    """When the process runs next on a schedule (the earliest armed row), or None."""
    if not process.enabled:
        return None
    return (Schedule.objects.filter(func=FIRE, args__startswith=f"({int(process.pk)}, ")
            .exclude(repeats=0).order_by("next_run").values_list("next_run", flat=True).first())


# --- Firing -------------------------------------------------------------------------------

def fire(process_id: int, position: int, scheduled_for: str | None = None) -> str | None:
    """django-q2 runs this when a schedule trigger's row is due.

    Starts one run (the idempotency key holds process, position and scheduled time, so a
    duplicated fire starts nothing new) and re-arms the row for the next local occurrence.
    The re-arm waits for commit: with a synchronous queue this runs inside the scheduler's
    transaction, which saves its own copy of the row after we return.
    """
    from automation.models import ProcessTrigger

    now = timezone.now()
    when = datetime.fromisoformat(scheduled_for).astimezone(UTC) if scheduled_for else now
    trigger = (ProcessTrigger.objects.select_related("process", "version")
               .filter(process_id=process_id, position=position,
                       type=ProcessTrigger.Type.SCHEDULE, process__enabled=True).first())
    rows = Schedule.objects.filter(func=FIRE, args=schedule_args(process_id, position))
    if trigger is None:
        transaction.on_commit(rows.delete)
        return None
    try:
        due = trigger_next_occurrence(trigger.config, after=max(now, when))
    except ScheduleConfigError as exc:
        logger.warning("schedule trigger %s:%s dropped: %s", trigger.process.slug, position, exc)
        transaction.on_commit(rows.delete)
        return None
    transaction.on_commit(lambda: rows.update(next_run=due, repeats=1))
    return _start(trigger, when)


def _start(trigger, when: datetime) -> str | None:
    from automation.models import ProcessTrigger
    from automation.services.runs import run_start

    config = trigger.config
    tz_name = timezone_name(config)
    moment = {"scheduledFor": when.isoformat(), "timezone": tz_name,
              "localTime": when.astimezone(ZoneInfo(tz_name)).isoformat()}
    event = {"type": "schedule", "cron": config.get("cron"), **moment, "data": moment}
    if not condition_holds(trigger.pk, trigger.condition,
                           expression_scope(input=moment, event=event)):
        ProcessTrigger.objects.filter(pk=trigger.pk).update(skipped_count=F("skipped_count") + 1)
        return None
    run, _ = run_start(
        process=trigger.process, version=trigger.version, input=moment,
        trigger={"type": "schedule", "triggerId": trigger.pk, "position": trigger.position,
                 "cron": config.get("cron"), **moment, "event": event},
        idempotency_key=f"schedule:{trigger.process_id}:{trigger.position}:{when.isoformat()}",
    )
    return str(run.pk)

