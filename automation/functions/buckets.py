"""Rate-limit buckets shared by every worker on every machine: a row of the database
(one statement on PostgreSQL and SQLite) or a Redis key (one Lua script) when Redis is
the broker (docs/user-guide/rate-limits.md).

The bucket is a token bucket kept as one number, its *theoretical arrival time* (`tat`,
the generic cell rate algorithm): a request is granted at `max(now, tat - tolerance)` and
pushes `tat` one interval on. A caller may reserve a request up to `max_wait` seconds
ahead (it then sleeps until its turn); one further ahead is not reserved and the caller
is told how long until one is free. A vendor's Retry-After pushes `tat` past the hold.

So that a burst plus the refill never exceeds the vendor's window (nor does the jitter
between our grant and the vendor's clock), a limit of N per W seconds becomes a burst
of N/10 (at least 1) and a refill of (N - burst) per W + margin seconds: any W seconds
then see at most N requests.
"""

import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connections, router

from automation.connections.limits import RateLimit
from automation.models import RateBucket


@dataclass(frozen=True)
class Rates:
    interval: float  # seconds between two requests once the burst is spent (0: no count)
    tolerance: float  # how far ahead of `tat` a request may go: the burst

    @classmethod
    def of(cls, limit: RateLimit) -> "Rates":
        if limit.requests is None:
            return cls(0.0, 0.0)
        margin = float(getattr(settings, "ENTITYFLOW_RATE_LIMIT_MARGIN_SECONDS", 0.5))
        burst = max(1, limit.requests // 10)
        interval = (limit.per_seconds + margin) / max(limit.requests - burst, 1)
        return cls(interval, (burst - 1) * interval)


def backend() -> str:
    """"redis" when Redis is the broker (REDIS_URL), else "database";
    ENTITYFLOW_RATE_LIMIT_BACKEND forces one."""
    chosen = getattr(settings, "ENTITYFLOW_RATE_LIMIT_BACKEND", "auto") or "auto"
    if chosen != "auto":
        return chosen
    return "redis" if settings.Q_CLUSTER.get("redis") else "database"


def take(key: str, limit: RateLimit, *, max_wait: float) -> tuple[bool, float]:
    """(True, wait): a request is reserved, to be sent in `wait` seconds (0: now).
    (False, wait): none within `max_wait`; the next is free in about `wait` seconds."""
    rates = Rates.of(limit)
    if backend() == "redis":
        return _redis_take(key, rates, max_wait)
    return _database_take(key, rates, max_wait)


def hold(key: str, limit: RateLimit, seconds: float) -> None:
    """No request from this bucket before `seconds` from now (a vendor's Retry-After)."""
    rates = Rates.of(limit)
    if backend() == "redis":
        _redis_hold(key, rates, seconds)
    else:
        _database_hold(key, rates, seconds)


# -- the database ------------------------------------------------------------------------

_TABLE = RateBucket._meta.db_table
# The new row's tat is `now + interval`, so `excluded.tat - interval` is the statement's
# now on either side of the conflict. A row is updated (and returned) only when its
# next request is at most max_wait away.
_TAKE = f"""
INSERT INTO {_TABLE} (key, tat) VALUES (%s, {{now}} + %s)
ON CONFLICT (key) DO UPDATE SET tat = {{greatest}}({_TABLE}.tat + %s, excluded.tat)
WHERE {{greatest}}({_TABLE}.tat, excluded.tat - %s) - (excluded.tat - %s) - %s <= %s
RETURNING tat, {{now}}"""  # noqa: S608 (the model's table; values are parameters)
_READ = f"SELECT tat, {{now}} FROM {_TABLE} WHERE key = %s"  # noqa: S608
_HOLD = f"""
INSERT INTO {_TABLE} (key, tat) VALUES (%s, {{now}} + %s)
ON CONFLICT (key) DO UPDATE SET tat = {{greatest}}({_TABLE}.tat, excluded.tat)"""  # noqa: S608


def _sql(template: str, vendor: str) -> str:
    if vendor == "postgresql":  # the database's clock: one clock for every machine
        return template.format(now="EXTRACT(EPOCH FROM statement_timestamp())::float8",
                               greatest="GREATEST")
    return template.format(now="%s", greatest="MAX")  # SQLite: one machine, its clock


def _database_take(key: str, rates: Rates, max_wait: float) -> tuple[bool, float]:
    connection = connections[router.db_for_write(RateBucket)]
    vendor = connection.vendor
    now = [] if vendor == "postgresql" else [time.time()]
    interval, tolerance = rates.interval, rates.tolerance
    with connection.cursor() as cursor:
        cursor.execute(_sql(_TAKE, vendor), [key, *now, interval, interval, interval,
                                             interval, tolerance, max_wait, *now])
        row = cursor.fetchone()
        if row is not None:
            tat, clock = row
            return True, max(0.0, tat - interval - tolerance - clock)
        cursor.execute(_sql(_READ, vendor), [*now, key])
        tat, clock = cursor.fetchone()
    return False, max(0.0, max(tat, clock) - tolerance - clock)


def _database_hold(key: str, rates: Rates, seconds: float) -> None:
    connection = connections[router.db_for_write(RateBucket)]
    vendor = connection.vendor
    now = [] if vendor == "postgresql" else [time.time()]
    with connection.cursor() as cursor:
        cursor.execute(_sql(_HOLD, vendor), [key, *now, seconds + rates.tolerance])


# -- Redis -------------------------------------------------------------------------------

# Redis's own clock (TIME), so every machine agrees. Numbers go back as text: Lua numbers
# become integers in a Redis reply. The key expires once the bucket would be full again.
_TAKE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval, tolerance, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local base = math.max(tat, now)
local wait = base - tolerance - now
if wait <= max_wait then
  local new = base + interval
  redis.call('SET', KEYS[1], string.format('%.6f', new), 'EX', math.ceil(new - now) + 60)
  return {1, string.format('%.6f', math.max(wait, 0))}
end
return {0, string.format('%.6f', wait)}
"""
_HOLD_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local new = math.max(tat, until_)
redis.call('SET', KEYS[1], string.format('%.6f', new), 'EX', math.ceil(new - now) + 60)
return 1
"""
_scripts: dict = {}


def _script(name: str, source: str):
    if name not in _scripts:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL or settings.Q_CLUSTER["redis"])
        _scripts[name] = client.register_script(source)
    return _scripts[name]


def redis_key(key: str) -> str:
    """Per database, so several installations (or test sessions) may share one Redis."""
    name = connections[router.db_for_write(RateBucket)].settings_dict["NAME"]
    return f"entityflow:ratelimit:{name}:{key}"


def _redis_take(key: str, rates: Rates, max_wait: float) -> tuple[bool, float]:
    granted, wait = _script("take", _TAKE_LUA)(
        keys=[redis_key(key)], args=[repr(rates.interval), repr(rates.tolerance), repr(max_wait)])
    return bool(int(granted)), max(0.0, float(wait))


def _redis_hold(key: str, rates: Rates, seconds: float) -> None:
    _script("hold", _HOLD_LUA)(keys=[redis_key(key)],
                               args=[repr(seconds + rates.tolerance)])


def seconds_text(seconds: float) -> str:
    return f"{math.ceil(seconds * 10) / 10:g} s"
