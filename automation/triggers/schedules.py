"""Schedule triggers as django-q2 `Schedule` rows, one per (process, trigger position).

Why not django-q2's own cron schedules: it evaluates cron in one fixed zone, so a
"09:00 America/New_York" job would drift by an hour across every DST change. Instead each
row is a ONCE schedule (`repeats=1`) whose `next_run` we compute in the trigger's own
zone. When django-q2's scheduler fires it, `fire` starts the run and re-arms the same row
for the next local occurrence.

Rules of local time: cron is matched against the wall clock of the zone. A time that a
spring-forward change skips (02:30) runs one hour later that day (03:30); a time that a
fall-back change repeats (01:30) runs once, at its first occurrence.

The rows are identified by `func` and `args` (process id, position); `name` is a label
for the admin (`entityflow:<slug>:<position>`).
"""

import logging
from collections import defaultdict
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import CroniterBadCronError, CroniterBadDateError, croniter
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone
from django_q.models import Schedule

from entities.exceptions import ExpressionError
from entities.expressions import evaluate_bool

logger = logging.getLogger(__name__)

FIRE = "automation.triggers.schedules.fire"
DEFAULT_TIMEZONE = "UTC"
MAX_CRON_LENGTH = 100  # Schedule.cron holds it for the admin
_MAX_CANDIDATES = 1000  # bounds the search through a repeated (fall-back) hour
SYNC_ATTEMPTS = 3


class ScheduleConfigError(ValueError):
    """A schedule trigger's cron or time zone cannot be used."""


# --- Validation and local-time arithmetic ---------------------------------------------

def validate_schedule_config(config: object, *, prefix: str = "config") -> dict[str, list[str]]:
    """Field errors of a schedule trigger's config, keyed by path (`<prefix>.cron`).

    Empty when the config can be scheduled: a five-field cron expression (or a croniter
    `@daily`-style alias) that occurs at least once, and an IANA time zone name.
    """
    if not isinstance(config, dict):
        return {prefix: ["config must be an object."]}
    errors: dict[str, list[str]] = {}
    cron, tz_name = config.get("cron"), timezone_name(config)
    cron_error = _cron_error(cron)
    if cron_error:
        errors[f"{prefix}.cron"] = [cron_error]
    try:
        zone = _zone(tz_name)
    except ScheduleConfigError as exc:
        errors[f"{prefix}.timezone"] = [str(exc)]
        return errors
    if not cron_error:
        try:
            next_occurrence(cron, zone, after=timezone.now())
        except ScheduleConfigError as exc:
            errors[f"{prefix}.cron"] = [str(exc)]
    return errors


def _cron_error(cron: object) -> str | None:
    if not isinstance(cron, str) or not cron.strip():
        return "A schedule trigger needs config.cron."
    if len(cron) > MAX_CRON_LENGTH:
        return f"The cron expression is longer than {MAX_CRON_LENGTH} characters."
    if not cron.strip().startswith("@") and len(cron.split()) != 5:
        return "Use five cron fields: minute hour day-of-month month day-of-week."
    if not croniter.is_valid(cron.strip()):
        return f"'{cron}' is not a valid cron expression."
    return None


def _zone(tz_name: object) -> ZoneInfo:
    if not isinstance(tz_name, str) or not tz_name:
        raise ScheduleConfigError("config.timezone must be an IANA time zone name.")
    try:
        return ZoneInfo(tz_name)
    except (KeyError, ValueError, OSError):
        raise ScheduleConfigError(
            f"Unknown time zone '{tz_name}'. Use an IANA name such as America/New_York."
        ) from None


def next_occurrence(cron: str, zone: ZoneInfo | str, *, after: datetime) -> datetime:
    """The first time strictly after `after` whose wall clock in `zone` matches `cron`,
    in UTC. Iterates over naive wall-clock times (each local time once) and only then
    attaches the zone, so DST changes neither shift nor double a run."""
    zone = zone if isinstance(zone, ZoneInfo) else _zone(zone)
    after_utc = after.astimezone(UTC)
    wall = after_utc.astimezone(zone).replace(tzinfo=None)
    try:
        candidates = croniter(cron.strip(), wall)
        for _ in range(_MAX_CANDIDATES):
            local = candidates.get_next(datetime).replace(tzinfo=zone)  # fold=0: first occurrence
            at = local.astimezone(UTC)
            if at > after_utc:
                return at
    except (CroniterBadCronError, CroniterBadDateError, ValueError) as exc:
        raise ScheduleConfigError(f"The cron expression '{cron}' never occurs: {exc}") from None
    raise ScheduleConfigError(f"No time matching '{cron}' was found after {after_utc.isoformat()}.")


def trigger_next_occurrence(config: object, *, after: datetime) -> datetime:
    """`next_occurrence` for a trigger's config; ScheduleConfigError when it is unusable."""
    if not isinstance(config, dict):
        raise ScheduleConfigError("config must be an object.")
    cron_error = _cron_error(config.get("cron"))
    if cron_error:
        raise ScheduleConfigError(cron_error)
    return next_occurrence(config["cron"], timezone_name(config), after=after)


def timezone_name(config: dict) -> object:
    tz_name = config.get("timezone")
    return DEFAULT_TIMEZONE if tz_name is None else tz_name


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
    with transaction.atomic():
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
    if trigger.condition and not _holds(trigger, {"input": moment, "event": event}):
        ProcessTrigger.objects.filter(pk=trigger.pk).update(skipped_count=F("skipped_count") + 1)
        return None
    run, _ = run_start(
        process=trigger.process, version=trigger.version, input=moment,
        trigger={"type": "schedule", "triggerId": trigger.pk, "position": trigger.position,
                 "cron": config.get("cron"), **moment, "event": event},
        idempotency_key=f"schedule:{trigger.process_id}:{trigger.position}:{when.isoformat()}",
    )
    return str(run.pk)


def _holds(trigger, scope: dict) -> bool:
    try:
        return evaluate_bool(trigger.condition, scope)
    except ExpressionError as exc:
        logger.warning("trigger %s condition failed: %s", trigger.pk, exc.message)
        return False
