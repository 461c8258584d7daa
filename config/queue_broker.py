"""django-q2's ORM broker for a task queue in a database of its own (config/queue.py).
A module of its own: it needs django-q2's models, so it is imported only once Django is
set up (by name, from Q_CLUSTER['broker_class'])."""

from django import db
from django.db import connections
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ

from automation.store.queues import ORDER, PriorityORM, queue_key
from entities.db import driver


class QueueBroker(PriorityORM):
    """The ORM broker with its queues per priority (automation.store.queues), for a queue
    in a database of its own. Before each use the
    stock broker closes the process's stale connections when the queue's connection is
    not in a transaction; with the queue in its own file that no longer says whether the
    engine's connection is, and closing that one mid-transaction (a doorbell sent while
    a run is being written) threw the transaction away. So: only when no connection of
    this process is in a transaction."""

    @staticmethod
    def get_connection(list_key: str = None):
        if not any(c.in_atomic_block for c in connections.all(initialized_only=True)):
            db.close_old_connections()
        return OrmQ.objects.using(Conf.ORM)

    def enqueue_many(self, packages: list[str], priority: str) -> None:
        """One doorbell: its row written by an INSERT that SQLite prepared once per
        connection, sent on the connection's own driver handle (entities.db.driver;
        docs/performance.md, "The doorbell's row in the queue's file"). Several (a
        chunk's): the ORM's way, whose multi-row statements commit 500 rows at a time
        (the driver's `executemany` would commit each row on its own outside a
        transaction).

        A doorbell rung after a commit (every save that starts a run rings one) is one
        row in its own write transaction of this file. Through the ORM that row cost
        more Python than SQLite spent writing it: the stale-connection sweep of every
        connection of the process, a queryset, Django's cursor and its wrappers, the
        placeholders rewritten and the field values prepared on every call. Here the
        statement's text never changes, so the driver's statement cache keeps it
        prepared, and the row is the same row (`lock`, the time from which a worker may
        take it, in Django's own text form for this column). Inside a transaction on
        the queue's connection (never the case for a doorbell after a commit) it goes
        the ORM's way, so Django's transaction checks apply. Stale connections are
        closed where Django closes them anyway (a request's end, django-q2 before each
        task) and by the dequeue's `get_connection` above."""
        connection = connections[Conf.ORM]
        if len(packages) != 1 or connection.vendor != "sqlite" or connection.in_atomic_block:
            super().enqueue_many(packages, priority)
            return
        lock = connection.ops.adapt_datetimefield_value(timezone.now())
        driver.execute(_doorbell_insert(), (queue_key(self._key(), priority), packages[0], lock),
                       using=Conf.ORM)

    def waiting_before(self, priority: str) -> bool:
        """Whether a doorbell of higher priority waits: the ORM's `exists()` on the
        queue's table, sent the doorbell's way (above) on SQLite. On SQLite a chunk
        doorbell asks this before each of its steps (engine.chunks); through the ORM the
        question (a queryset built and compiled, the stale-connection sweep, Django's
        cursor) cost more Python than the step it guards (docs/performance.md, "Batches
        done on SQLite: the priority question prepared")."""
        above = ORDER.index(priority)
        keys, taken = self.keys()[:above], self.taken_keys()[:above]
        connection = connections[Conf.ORM]
        if not keys or connection.vendor != "sqlite" or connection.in_atomic_block:
            return super().waiting_before(priority)
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        params = [value for name in keys for value in (name, now)]
        params += [value for name in taken for value in (name, now)]
        return driver.execute(_waiting_select(len(keys)), params,
                              using=Conf.ORM).fetchone() is not None


def _waiting_select(keys: int) -> str:
    """`waiting_before`'s SELECT for `keys` queue keys and as many taken keys (a due row
    of the queues, or a live marker of a doorbell taken and not begun: store.queues), as
    the ORM names the table and columns (built once per number of keys; its text never
    changes, so the driver keeps it prepared). One equality per key, each read through
    the (key, lock) index, joined by UNION ALL: SQLite ran `key IN (…) … OR key IN (…)`
    six times slower (docs/performance.md, "A high run behind a low batch")."""
    if keys not in _SELECTS:
        table = OrmQ._meta.db_table
        key, lock = (OrmQ._meta.get_field(name).column for name in ("key", "lock"))
        due = f'SELECT 1 FROM "{table}" WHERE "{key}" = %s AND "{lock}" <= %s'  # noqa: S608
        live = f'SELECT 1 FROM "{table}" WHERE "{key}" = %s AND "{lock}" > %s'  # noqa: S608
        _SELECTS[keys] = " UNION ALL ".join([due] * keys + [live] * keys) + " LIMIT 1"
    return _SELECTS[keys]


_SELECTS: dict[int, str] = {}


def _doorbell_insert() -> str:
    """The doorbell row's INSERT, as the ORM names the table and columns (built once)."""
    global _INSERT
    if _INSERT is None:
        table = OrmQ._meta.db_table
        columns = [OrmQ._meta.get_field(name).column for name in ("key", "payload", "lock")]
        names = ", ".join(f'"{column}"' for column in columns)
        _INSERT = f'INSERT INTO "{table}" ({names}) VALUES (%s, %s, %s)'  # noqa: S608
    return _INSERT


_INSERT: str | None = None
