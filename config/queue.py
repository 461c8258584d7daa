"""The task queue's own SQLite file (config/settings/base.py, docs/operating.md): the
database router (the ORM broker that goes with it: config/queue_broker.py).

On SQLite one write lock covers the whole file: with django-q2's ORM queue in the same
file, every doorbell, every task a worker takes and every result it stores waited on the
same lock as the engine's claims and records. With the `queue` alias (a second file)
this router keeps django-q2's models (the ORM broker's rows, task results, schedules)
there and everything else in `default`. On PostgreSQL there is no `queue` alias and no
router: one database, as before."""

QUEUE = "queue"
QUEUE_APPS = {"django_q"}


class QueueRouter:
    def db_for_read(self, model, **hints):
        return QUEUE if model._meta.app_label in QUEUE_APPS else None

    def db_for_write(self, model, **hints):
        return QUEUE if model._meta.app_label in QUEUE_APPS else None

    def allow_relation(self, obj1, obj2, **hints):
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        # an operation of our own migrations on django-q2's tables (an index) says so
        if app_label in QUEUE_APPS or hints.get("queue_table"):
            return db == QUEUE
        return db != QUEUE

