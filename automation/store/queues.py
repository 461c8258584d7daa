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

Other tasks (a batch's fan-out, webhook deliveries, the sweep) keep the normal queue.
The normal queue is the one django-q2 already uses, so a worker of an earlier release
still takes everything but the high and low doorbells.

Wired in config/settings/base.py as Q_CLUSTER["broker_class"].
"""

from time import sleep

from django.db import connections
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf
from django_q.models import OrmQ

from automation.models import Priority
from automation.store.delayed import DelayedORM, DelayedRedis

ORDER = (Priority.HIGH, Priority.NORMAL, Priority.LOW)


def queue_key(list_key: str, priority: str) -> str:
    """The normal queue is the broker's own key; the others carry a suffix."""
    return list_key if priority == Priority.NORMAL else f"{list_key}:{priority}"


class PriorityBroker:
    """What the doorbell asks of a broker besides django-q2's interface."""

    def keys(self) -> list[str]:
        return [queue_key(self.list_key, priority) for priority in ORDER]

    def enqueue_many(self, packages: list[str], priority: str) -> None:
        raise NotImplementedError

    def waiting_before(self, priority: str) -> bool:
        """Whether a doorbell of higher priority than `priority` waits (engine.chunks)."""
        raise NotImplementedError

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
        with self.connection.pipeline(transaction=False) as pipe:
            for key in self.keys()[:ORDER.index(priority)]:
                pipe.llen(key)
            return any(pipe.execute())

    def peek(self, limit: int) -> list[str]:
        with self.connection.pipeline(transaction=False) as pipe:
            for key in self.keys():
                pipe.lrange(key, 0, limit - 1)
            return [package for packages in pipe.execute() for package in packages][:limit]

    def dequeue(self):
        self.promote_due()  # delayed doorbells now due join their lists (store.delayed)
        task = self.connection.blpop(self.keys(), 1)  # the first non-empty key, in order
        if task:
            return [(None, task[1])]
        return None

    def queue_size(self) -> int:
        with self.connection.pipeline(transaction=False) as pipe:
            for key in self.keys():
                pipe.llen(key)
            return sum(pipe.execute())

    def delete_queue(self):
        return self.connection.delete(*self.keys(), *self.delayed_keys())

    def purge_queue(self):
        for key in self.keys():
            self.connection.ltrim(key, 1, 0)
        self.connection.delete(*self.delayed_keys())


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
        return self.get_connection().filter(key__in=self.keys()[:ORDER.index(priority)],
                                            lock__lte=timezone.now()).exists()

    def peek(self, limit: int) -> list[str]:
        return list(self.get_connection().filter(key__in=self.keys(), lock__lte=timezone.now())
                    .values_list("payload", flat=True)[:limit])

    def dequeue(self):
        """django-q2's ORM dequeue, asked of each priority's key in turn."""
        for key in self.keys():
            tasks = self._ready(key)
            if tasks:
                return tasks
        sleep(Conf.POLL)  # every queue empty: spare the CPU, as django-q2 does
        return None

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
        return self.get_connection().filter(key__in=self.keys()).delete()
