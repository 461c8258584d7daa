"""Delayed doorbells: a task that a worker takes when it is due, not before
(docs/architecture.md, "Delayed doorbells").

A wait's wake, a step put off by a rate limit or a retry's backoff, and a trailing
debounce's fire are due at a known time. A django-q2 schedule would run them, but the
cluster's scheduler looks only every 30 s; these are taken within about a poll interval
of their time instead, and no worker sleeps meanwhile. Both brokers hold them as data,
so they outlive the process that sent them:

- ORM: the queue row is written with its `lock` at the due time. django-q2's dequeue (and
  ours, store.queues) only takes rows whose `lock` has passed, so the row stays invisible
  until due; the queue's size does not count it before then (a locked row).
- Redis: a sorted set beside each priority's list, scored by the due time (epoch
  seconds). The dequeuing pusher moves what is due onto the lists with one Lua script
  (atomic: two pushers never both move one doorbell), at most every PROMOTE_EVERY
  seconds: one cheap round trip (ZRANGEBYSCORE on a sorted set's head), not one per task.

Durability is the sweeper's as for any doorbell: the rows that say a step, wait or
debounce is due are the truth, and a delayed doorbell that is lost (a Redis without
persistence restarted) is made up by services.sweeper, waits_due_sweep and
debounces_sweep.
"""

import time
from datetime import datetime

from django.utils import timezone
from django_q.models import OrmQ

DELAYED_SUFFIX = ":delayed"
PROMOTE_EVERY = 0.2  # seconds between two looks at the delayed sets, per pusher
PROMOTE_AT_MOST = 500  # doorbells moved per sorted set and look

# KEYS: sorted set, list, sorted set, list, ...; ARGV[1]: now (epoch seconds); ARGV[2]: at
# most this many per set. Returns how many doorbells were moved.
PROMOTE_SCRIPT = """
local moved = 0
for i = 1, #KEYS, 2 do
  local due = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
  if #due > 0 then
    redis.call('RPUSH', KEYS[i + 1], unpack(due))
    redis.call('ZREM', KEYS[i], unpack(due))
    moved = moved + #due
  end
end
return moved
"""


def delayed_key(list_key: str) -> str:
    return list_key + DELAYED_SUFFIX


class DelayedRedis:
    """For store.queues.PriorityRedis (a django-q2 Redis broker with `keys()`)."""

    _promote = None
    _promoted_at = -float("inf")

    def enqueue_later(self, packages: list[str], list_key: str, due: datetime) -> None:
        self.connection.zadd(delayed_key(list_key), dict.fromkeys(packages, due.timestamp()))

    def promote_due(self, *, now: float | None = None, force: bool = False) -> int:
        """Move the delayed doorbells that are due onto their lists (throttled)."""
        clock = time.monotonic()
        if not force and clock - self._promoted_at < PROMOTE_EVERY:
            return 0
        self._promoted_at = clock
        if self._promote is None:
            self._promote = self.connection.register_script(PROMOTE_SCRIPT)
        keys = [key for list_key in self.keys() for key in (delayed_key(list_key), list_key)]
        return int(self._promote(keys=keys, args=[now if now is not None else time.time(),
                                                 PROMOTE_AT_MOST]))

    def delayed_size(self) -> int:
        """Delayed doorbells not yet moved onto a list."""
        with self.connection.pipeline(transaction=False) as pipe:
            for key in self.keys():
                pipe.zcard(delayed_key(key))
            return sum(pipe.execute())

    def delayed_keys(self) -> list[str]:
        return [delayed_key(key) for key in self.keys()]


class DelayedORM:
    """For store.queues.PriorityORM (django-q2's ORM broker): a row locked until due."""

    def enqueue_later(self, packages: list[str], list_key: str, due: datetime) -> None:
        rows = [OrmQ(key=list_key, payload=package, lock=due) for package in packages]
        self.get_connection().bulk_create(rows, batch_size=300)

    def promote_due(self, **_) -> int:
        return 0  # a row becomes visible by itself when its lock passes

    def delayed_size(self) -> int:
        """Rows locked into the future: delayed doorbells and those a worker holds."""
        return self.get_connection().filter(key__in=self.keys(),
                                            lock__gt=timezone.now()).count()

