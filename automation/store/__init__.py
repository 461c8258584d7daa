"""The run store: the only code that writes runs and step runs.

Claim a step, record an outcome with its successors (joins, loops, the run's status),
finish, cancel, start a re-run (a retry is one), sweep. Two backends behind one
interface (store.base.RunStore), chosen once per database and settings, like Django's
database backends: the portable ORM backend and the PostgreSQL one (store.postgresql).
docs/architecture.md draws the life of a step through it.
"""

from django.conf import settings
from django.core.signals import setting_changed
from django.db import connections, router

from automation.models import StepRun
from automation.store.base import RunStore, StoreFeatures
from automation.store.claims import Claim, Handover
from automation.store.postgresql import PostgresRunStore
from automation.store.state import StepState

_stores: dict[str, RunStore] = {}


def get_store() -> RunStore:
    """The store for the database runs live on. PostgreSQL gets its own backend unless
    ENTITYFLOW_ONE_STATEMENT_STEPS is off (docs/operating.md)."""
    using = router.db_for_write(StepRun)
    store = _stores.get(using)
    if store is None:
        store = _stores[using] = _backend(using)
    return store


def _backend(using: str) -> RunStore:
    if (connections[using].vendor == "postgresql"
            and getattr(settings, "ENTITYFLOW_ONE_STATEMENT_STEPS", True)):
        return PostgresRunStore(using)
    return RunStore(using)


def _forget(*, setting: str, **kwargs) -> None:
    if setting in ("ENTITYFLOW_ONE_STATEMENT_STEPS", "DATABASES"):
        _stores.clear()


setting_changed.connect(_forget, dispatch_uid="entityflow-run-store")

__all__ = ["Claim", "Handover", "RunStore", "StepState", "StoreFeatures", "get_store"]
