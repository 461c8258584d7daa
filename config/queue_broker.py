"""django-q2's ORM broker for a task queue in a database of its own (config/queue.py).
A module of its own: it needs django-q2's models, so it is imported only once Django is
set up (by name, from Q_CLUSTER['broker_class'])."""

from django import db
from django.db import connections
from django_q.conf import Conf
from django_q.models import OrmQ

from automation.store.queues import PriorityORM


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
