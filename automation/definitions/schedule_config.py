"""What a schedule trigger's config must hold to be served, and the local-time arithmetic
that decides it: a cron expression matched against the wall clock of an IANA time zone.

Rules of local time: a time that a spring-forward change skips (02:30) runs one hour
later that day (03:30); a time that a fall-back change repeats (01:30) runs once, at its
first occurrence. The schedule trigger (automation.triggers.schedules) arms its rows with
`trigger_next_occurrence`, so a definition that passes here can always be scheduled.
"""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import CroniterBadCronError, CroniterBadDateError, croniter
from django.utils import timezone

DEFAULT_TIMEZONE = "UTC"
MAX_CRON_LENGTH = 100  # Schedule.cron holds it for the admin
_MAX_CANDIDATES = 1000  # bounds the search through a repeated (fall-back) hour


class ScheduleConfigError(ValueError):
    """A schedule trigger's cron or time zone cannot be used."""


def validate_schedule_config(config: object, *, prefix: str = "config") -> dict[str, list[str]]:
    """Field errors of a schedule trigger's config, keyed by path (`<prefix>.cron`).

    Empty when the config can be scheduled: a five-field cron expression (or a croniter
    `@daily`-style alias) that occurs at least once, and an IANA time zone name.
    """
    if not isinstance(config, dict):
        return {prefix: ["config must be an object."]}
    errors: dict[str, list[str]] = {}
    cron, tz_name = config.get("cron"), timezone_name(config)
    problem = cron_error(cron)
    if problem:
        errors[f"{prefix}.cron"] = [problem]
    try:
        zone = zone_for(tz_name)
    except ScheduleConfigError as exc:
        errors[f"{prefix}.timezone"] = [str(exc)]
        return errors
    if not problem:
        try:
            next_occurrence(cron, zone, after=timezone.now())
        except ScheduleConfigError as exc:
            errors[f"{prefix}.cron"] = [str(exc)]
    return errors


def cron_error(cron: object) -> str | None:
    """Why `cron` is not a usable cron expression, or None."""
    if not isinstance(cron, str) or not cron.strip():
        return "A schedule trigger needs config.cron."
    if len(cron) > MAX_CRON_LENGTH:
        return f"The cron expression is longer than {MAX_CRON_LENGTH} characters."
    if not cron.strip().startswith("@") and len(cron.split()) != 5:
        return "Use five cron fields: minute hour day-of-month month day-of-week."
    if not croniter.is_valid(cron.strip()):
        return f"'{cron}' is not a valid cron expression."
    return None


def zone_for(tz_name: object) -> ZoneInfo:
    """The IANA zone called `tz_name`; ScheduleConfigError when there is none."""
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
    zone = zone if isinstance(zone, ZoneInfo) else zone_for(zone)
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
    problem = cron_error(config.get("cron"))
    if problem:
        raise ScheduleConfigError(problem)
    return next_occurrence(config["cron"], timezone_name(config), after=after)


def timezone_name(config: dict) -> object:
    """The trigger's `timezone`, UTC when it names none."""
    tz_name = config.get("timezone")
    return DEFAULT_TIMEZONE if tz_name is None else tz_name
