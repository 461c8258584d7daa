"""Broker queues per priority (docs/user-guide/priority.md).

A doorbell goes to the queue of its step's priority; every worker's pusher takes from
the high queue first, then the normal one, then the low one. A run of high priority so
waits only for the doorbells a worker already holds (django-q2 hands a worker at most
`queue_limit` tasks ahead, workers² by default), not for the thousands of low ones a batch
queued before it.

Why queues and not an ordered claim: a doorbell names its step, and a worker takes
doorbells in the broker's order, so a claim that preferred high steps would still read
every low doorbell queued before the high one. Both brokers can do it directly:

- Redis: one list per priority; BLPOP over the three keys pops from the first that is
  not empty (one round trip, as before).
- ORM: the queue table's `key` holds the priority's name; one indexed read per priority
  (migration 0011 adds the (key, lock) index django-q2's table lacks).

A doorbell already taken but not begun: a worker's pusher takes doorbells ahead into its
cluster's local queue (django-q2's `queue_limit`), so a high doorbell can be out of the
broker while the chunk doorbells taken before it still wait for, or run on, that
cluster's workers. A chunk asking only the broker would then find nothing and run to its
end. So the dequeue, when it hands out a high or normal doorbell while a doorbell of
lower priority it handed out may still be queued or running in its cluster, leaves a
marker ("taken, not begun") in the broker beside the queues, with an expiry of
TAKEN_FOR seconds; the worker removes it just before the task begins (`taken_begun`, on
django-q2's `pre_execute`). `waiting_before` counts a live marker of a higher priority as
a waiting doorbell, in the same single round trip. A marker whose task never begins (its
pusher or worker killed) expires by itself: a chunk then stops yielding to it, and
nothing ever waits on it. The marker lives beside the queue (per queue name), so every
cluster on the queue sees it; a chunk of another cluster then gives way for nothing
while it lives (it loses no step: the rest is rung again).

Other tasks (a batch's fan-out, webhook deliveries, the sweep) keep the normal queue.
The normal queue is the one django-q2 already uses, so a worker of an earlier release
still takes everything but the high and low doorbells.

Wired in config/settings/base.py as Q_CLUSTER["broker_class"].
"""

import logging
import time
import uuid
from datetime import timedelta
from time import sleep

from django.db import connections
from django.db.models import Q
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf
from django_q.models import OrmQ

from automation.models import Priority
from automation.store.delayed import DelayedORM, DelayedRedis

logger = logging.getLogger(__name__)
ORDER = (Priority.HIGH, Priority.NORMAL, Priority.LOW)
TAKEN_SUFFIX = ":taken"
# Seconds a "taken, not begun" marker lives when its task never begins (a killed pusher or
# worker): long enough for the chunks ahead of it in its cluster to yield, short enough
# that a lost one soon stops costing anything.
TAKEN_FOR = 5.0
# Seconds after a pusher handed out a doorbell during which that doorbell may still be in
# its cluster's local queue or running there (a chunk runs for ENTITYFLOW_CONTINUE_MAX_MS
# at most, after the few tasks queued ahead of it). Only then can a doorbell of higher
# priority taken by the same pusher be held back by it, so only then is a marker left.
HANDED_FOR = 30.0


def queue_key(list_key: str, priority: str) -> str:
    """The normal queue is the broker's own key; the others carry a suffix."""
    return list_key if priority == Priority.NORMAL else f"{list_key}:{priority}"


def taken_key(list_key: str, priority: str) -> str:
    """Where the markers of the doorbells of `priority` taken and not begun live."""
    return queue_key(list_key, priority) + TAKEN_SUFFIX


class PriorityBroker:
    """What the doorbell asks of a broker besides django-q2's interface."""

    def keys(self) -> list[str]:
        return [queue_key(self.list_key, priority) for priority in ORDER]

    def taken_keys(self) -> list[str]:
        """The markers' keys, high then normal (a low doorbell holds nothing back)."""
        return [key + TAKEN_SUFFIX for key in self.keys()[:-1]]

    def enqueue_many(self, packages: list[str], priority: str) -> None:
        raise NotImplementedError

    def waiting_before(self, priority: str) -> bool:
        """Whether a doorbell of higher priority than `priority` waits (engine.chunks):
        queued in the broker, or taken by a pusher and not begun (its marker, above)."""
        raise NotImplementedError

    def taken_begun(self, ack_id: str) -> None:
        """The task of a marked doorbell (its ack id a `str`, from `dequeue`) begins."""
        raise NotImplementedError

    def _to_mark(self, priority: str) -> bool:
        """Whether a doorbell of `priority` this pusher hands out now gets a marker: when
        it handed out one of lower priority within HANDED_FOR (above). Remembered per
        broker instance, which is the pusher's own."""
        now = time.monotonic()
        handed = self.__dict__.setdefault("_handed_until", {})
        lower = any(handed.get(p, 0.0) > now for p in ORDER[ORDER.index(priority) + 1:])
        handed[priority] = now + HANDED_FOR
        return lower

    def peek(self, limit: int) -> list[str]:
        """Up to `limit` queued packages, in the order they are taken, left queued."""
        raise NotImplementedError

    def enqueue_many_later(self, packages: list[str], priority: str, due) -> None:
        """Doorbells taken once `due` has passed (store.delayed)."""
        self.enqueue_later(packages, self.keys()[ORDER.index(priority)], due)


class PriorityRedis(PriorityBroker, DelayedRedis, Redis):
    def enqueue_at(self, package: str, priority: str):
        return self.connection.rpush(queue_key(self.list_key, priority), package)

    def enqueue_many(self, packages: list[str], priority: str) -> None:
        self.connection.rpush(queue_key(self.list_key, priority), *packages)

    def waiting_before(self, priority: str) -> bool:
        """One round trip: the lists' lengths and the live markers, of the priorities
        above `priority`."""
        above, now = ORDER.index(priority), time.time()
        with self.connection.pipeline(transaction=False) as pipe:
            for key in self.keys()[:above]:
                pipe.llen(key)
            for key in self.taken_keys()[:above]:
                pipe.zcount(key, now, "+inf")
            return any(pipe.execute())

    def taken_begun(self, ack_id: str) -> None:
        """Its marker removed, and any expired one (one round trip)."""
        now = time.time()
        with self.connection.pipeline(transaction=False) as pipe:
            for key in self.taken_keys():
                pipe.zrem(key, ack_id)
                pipe.zremrangebyscore(key, "-inf", now)
            pipe.execute()

    def peek(self, limit: int) -> list[str]:
        with self.connection.pipeline(transaction=False) as pipe:
            for key in self.keys():
                pipe.lrange(key, 0, limit - 1)
            return [package for packages in pipe.execute() for package in packages][:limit]

    def dequeue(self):
        self.promote_due()  # delayed doorbells now due join their lists (store.delayed)
        task = self.connection.blpop(self.keys(), 1)  # the first non-empty key, in order
        if not task:
            return None
        key = task[0].decode() if isinstance(task[0], bytes) else task[0]
        priority = ORDER[self.keys().index(key)]
        if not self._to_mark(priority):  # remembered for every priority
            return [(None, task[1])]
        # a sorted set scored by expiry: ZCOUNT from now counts the live ones; its member
        # comes back to the worker as the task's ack id (Redis acknowledges nothing)
        token = uuid.uuid4().hex
        try:
            self.connection.zadd(taken_key(self.list_key, priority),
                                 {token: time.time() + TAKEN_FOR})
        except Exception:  # the doorbell is out of the list already: hand it out unmarked
            logger.warning("could not mark a taken doorbell", exc_info=True)
            return [(None, task[1])]
        return [(token, task[1])]

    def queue_size(self) -> int:
        with self.connection.pipeline(transaction=False) as pipe:
            for key in self.keys():
                pipe.llen(key)
            return sum(pipe.execute())

    def delete_queue(self):
        return self.connection.delete(*self.keys(), *self.delayed_keys(), *self.taken_keys())

    def purge_queue(self):
        for key in self.keys():
            self.connection.ltrim(key, 1, 0)
        self.connection.delete(*self.delayed_keys(), *self.taken_keys())


class PriorityORM(PriorityBroker, DelayedORM, ORM):
    def _key(self) -> str:
        return self.list_key or Conf.CLUSTER_NAME

    def keys(self) -> list[str]:
        return [queue_key(self._key(), priority) for priority in ORDER]

    def enqueue_at(self, package: str, priority: str):
        return self.get_connection().create(key=queue_key(self._key(), priority),
                                            payload=package, lock=timezone.now()).pk

    def enqueue_many(self, packages: list[str], priority: str) -> None:
        """The rows (key, payload, lock) as `bulk_create` would write them, without a model
        instance each (a batch's chunk sends 2,000), in statements of at most 500 rows
        (SQLite's limit on parameters)."""
        connection = connections[self.get_connection().db]
        qn = connection.ops.quote_name
        fields = [OrmQ._meta.get_field(name) for name in ("key", "payload", "lock")]
        key = queue_key(self._key(), priority)
        lock = fields[2].get_db_prep_save(timezone.now(), connection)
        head = (f"INSERT INTO {qn(OrmQ._meta.db_table)} "  # noqa: S608 - quoted names only
                f"({', '.join(qn(f.column) for f in fields)}) VALUES ")
        with connection.cursor() as cursor:
            for start in range(0, len(packages), 500):
                rows = packages[start:start + 500]
                params = [value for package in rows for value in (key, package, lock)]
                cursor.execute(head + ", ".join(["(%s, %s, %s)"] * len(rows)), params)

    def waiting_before(self, priority: str) -> bool:
        """One query: a due row of a priority above `priority`, or a live marker of one
        (a row of its taken key whose `lock` is its expiry)."""
        above, now = ORDER.index(priority), timezone.now()
        return self.get_connection().filter(
            Q(key__in=self.keys()[:above], lock__lte=now)
            | Q(key__in=self.taken_keys()[:above], lock__gt=now)).exists()

    def taken_begun(self, ack_id: str) -> None:
        """Its marker row deleted, and any expired one (one statement)."""
        self.get_connection().filter(Q(payload=ack_id) | Q(lock__lte=timezone.now()),
                                     key__in=self.taken_keys()).delete()

    def peek(self, limit: int) -> list[str]:
        return list(self.get_connection().filter(key__in=self.keys(), lock__lte=timezone.now())
                    .values_list("payload", flat=True)[:limit])

    def dequeue(self):
        """django-q2's ORM dequeue, asked of each priority's key in turn."""
        for key, priority in zip(self.keys(), ORDER, strict=True):
            tasks = self._ready(key)
            if tasks and self._to_mark(priority):
                return self._mark(tasks, priority)
            if tasks:
                return tasks
        sleep(Conf.POLL)  # every queue empty: spare the CPU, as django-q2 does
        return None

    def _mark(self, tasks: list, priority: str) -> list:
        """A marker row per taken doorbell (its `payload` the row's id, its `lock` its
        expiry); the ack id becomes that text, which the ORM's delete by pk takes as it
        takes the number."""
        expiry = timezone.now() + timedelta(seconds=TAKEN_FOR)
        key = taken_key(self._key(), priority)
        try:
            self.get_connection().bulk_create(
                [OrmQ(key=key, payload=str(pk), lock=expiry) for pk, _ in tasks])
        except Exception:  # the rows are taken already: hand them out unmarked
            logger.warning("could not mark %d taken doorbells", len(tasks), exc_info=True)
            return tasks
        return [(str(pk), payload) for pk, payload in tasks]

    def _ready(self, key: str) -> list:
        rows = self.get_connection().filter(key=key, lock__lt=timezone.now()).order_by("lock")[
            :Conf.BULK]
        taken = []
        for row in rows:  # another cluster may be faster: the conditional UPDATE decides
            if self.get_connection().filter(id=row.id, lock=row.lock).update(
                    lock=self.timeout(row)):
                taken.append((row.pk, row.payload))
        return taken

    def queue_size(self) -> int:
        return self.get_connection().filter(key__in=self.keys(),
                                            lock__lte=timezone.now()).count()

    def lock_size(self) -> int:
        return self.get_connection().filter(key__in=self.keys(),
                                            lock__gt=timezone.now()).count()

    def purge_queue(self):
        return self.get_connection().filter(key__in=self.keys() + self.taken_keys()).delete()
