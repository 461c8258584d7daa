"""Waiting for a run to settle without holding a database connection (synchronous
replies, docs/user-guide/triggers.md "Synchronous replies").

A run *settles* when it ends (completed, failed, cancelled) or when nothing in it can
move without people (status `waiting`: a human step). A caller that asked to wait
(`?wait=`, a webhook's `respond: "result"`) marks its run (`trigger.wait`); only such
runs are announced, so runs nobody waits for cost nothing here.

Two halves, both in this module:

- `announce(run)`, called by the store in the transaction that records the change.
  On PostgreSQL it is a `pg_notify` in that transaction (the PostgreSQL store's
  one-statement record of a run's end adds the same call to its statement,
  `NOTIFY_CTE`), so the notification is sent exactly when the change commits. With
  Redis (`REDIS_URL`, on a database without LISTEN) it is a PUBLISH after the commit.
  Without either nothing is sent: the waiters poll.
- `wait_until_settled(run_id, seconds)`, called by the web process. One listener
  thread per process holds the only connection that waits: a LISTEN connection, or a
  Redis subscription, or (polling) a database connection opened for one query every
  `ENTITYFLOW_WAIT_POLL_SECONDS` and closed again. It wakes the waiting requests
  through `threading.Event`s, so N waiting requests cost one connection, not N. The
  waiting request closes its own database connection before it waits and after it
  reads the answer. With LISTEN or Redis the listener also re-reads the runs waited on
  every `ENTITYFLOW_WAIT_RECHECK_SECONDS`, so a notification lost with a dropped
  connection (or a run that was started before a caller asked to wait for it, the
  same Idempotency-Key) costs at most that long.
"""

import logging
import os
import threading
import time
from collections.abc import Iterable

from django.conf import settings
from django.db import connections, router, transaction

from automation.models import Run

logger = logging.getLogger(__name__)

CHANNEL = "entityflow_run_settled"
MAX_WAIT_SECONDS = 30
SETTLED = (*Run.FINISHED, Run.Status.WAITING)
# The CTE the PostgreSQL store appends to its one-statement record of a run's end; it
# reads the ids the `finished` CTE returns. MATERIALIZED, so it runs although the
# statement only counts its rows.
NOTIFY_CTE = "notified AS MATERIALIZED (SELECT pg_notify(%s, id::text) FROM finished)"


def mode() -> str:
    """How settled runs are announced and waited for: "postgresql" (LISTEN/NOTIFY),
    "redis" (pub/sub) or "poll". ENTITYFLOW_WAIT_NOTIFY forces one; "auto" picks
    LISTEN on PostgreSQL, else Redis when REDIS_URL is set, else polling."""
    chosen = getattr(settings, "ENTITYFLOW_WAIT_NOTIFY", "auto") or "auto"
    if chosen != "auto":
        return chosen
    if connections[router.db_for_write(Run)].vendor == "postgresql":
        return "postgresql"
    return "redis" if getattr(settings, "REDIS_URL", "") else "poll"


def awaited(run: Run) -> bool:
    """Someone asked to wait for this run (`?wait=`, a webhook's respond "result")."""
    trigger = run.trigger
    return isinstance(trigger, dict) and bool(trigger.get("wait"))


def announce(run: Run) -> None:
    """Say that `run` settled, in the transaction that records it (the store calls this
    after writing the run's new status). Runs nobody waits for announce nothing."""
    if not awaited(run):
        return
    how, connection = mode(), connections[router.db_for_write(Run)]
    if how == "postgresql" and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, str(run.pk)])
    elif how == "redis":
        run_id = str(run.pk)
        transaction.on_commit(lambda: _publish(run_id), using=router.db_for_write(Run))


def _redis_channel() -> str:
    """Per database, so several installations (or test sessions) may share one Redis."""
    name = connections[router.db_for_write(Run)].settings_dict["NAME"]
    return f"entityflow:run-settled:{name}"


def _publish(run_id: str) -> None:
    try:
        _redis().publish(_redis_channel(), run_id)
    except Exception:  # the waiters re-read every ENTITYFLOW_WAIT_RECHECK_SECONDS
        logger.warning("could not publish the end of run %s", run_id, exc_info=True)


_redis_client = None


def _redis():
    global _redis_client
    if _redis_client is None:
        import redis

        _redis_client = redis.Redis.from_url(settings.REDIS_URL)
    return _redis_client


# --- the waiting side ---------------------------------------------------------------


def release_connection() -> None:
    """Give the request's database connection back while it waits. Inside a
    transaction (ATOMIC_REQUESTS, a test's transaction) it cannot be closed: it stays."""
    connection = connections[router.db_for_read(Run)]
    if not connection.in_atomic_block:
        connection.close()


def wait_until_settled(run_id, seconds: float) -> Run:
    """The run when it settled, or as it is after `seconds`. Holds no database
    connection while it waits (none when it returns either, outside a transaction)."""
    run_id = str(run_id)
    listener = _listener()
    event = listener.register(run_id)
    deadline = time.monotonic() + min(float(seconds), MAX_WAIT_SECONDS)
    try:
        while True:
            run = Run.objects.get(pk=run_id)
            release_connection()
            remaining = deadline - time.monotonic()
            if run.status in SETTLED or remaining <= 0:
                return run
            event.wait(remaining)
            event.clear()
    finally:
        listener.unregister(run_id, event)


class Listener:
    """One per process: the connection that waits, and the requests waiting on it."""

    def __init__(self, how: str):
        self.how = how
        self.lock = threading.Lock()
        self.waiting: dict[str, set[threading.Event]] = {}
        self.someone = threading.Event()  # set while anyone waits
        self.pid = os.getpid()
        self.stopping = False
        self.alias = router.db_for_read(Run)
        self.thread = threading.Thread(target=self._run, name="entityflow-run-waits",
                                       daemon=True)
        self.thread.start()

    def register(self, run_id: str) -> threading.Event:
        event = threading.Event()
        with self.lock:
            self.waiting.setdefault(run_id, set()).add(event)
            self.someone.set()
        return event

    def unregister(self, run_id: str, event: threading.Event) -> None:
        with self.lock:
            events = self.waiting.get(run_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self.waiting[run_id]
            if not self.waiting:
                self.someone.clear()

    def wake(self, run_ids: Iterable[str]) -> None:
        with self.lock:
            for run_id in run_ids:
                for event in self.waiting.get(run_id, ()):
                    event.set()

    def _ids(self) -> list[str]:
        with self.lock:
            return list(self.waiting)

    def stop(self, timeout: float = 10) -> None:
        """End the thread (and close its connection) within a re-check interval."""
        self.stopping = True
        self.someone.set()
        self.thread.join(timeout)

    def _run(self) -> None:
        while not self.stopping:
            try:
                {"postgresql": self._listen_postgresql, "redis": self._listen_redis}.get(
                    self.how, self._poll)()
            except Exception:
                logger.warning("the run-wait listener lost its connection; reconnecting",
                               exc_info=True)
                self.wake(self._ids())  # each waiter re-reads its run
                time.sleep(1)

    def _recheck_seconds(self) -> float:
        return float(getattr(settings, "ENTITYFLOW_WAIT_RECHECK_SECONDS", 2.0))

    def _poll(self) -> None:
        """No notifications: one query for every run waited on, then the connection is
        closed until the next poll."""
        interval = float(getattr(settings, "ENTITYFLOW_WAIT_POLL_SECONDS", 0.25))
        while not self.stopping:
            self.someone.wait()
            self._recheck()
            time.sleep(interval)
        self.wake(self._ids())

    def _recheck(self, *, keep_connection: bool = False) -> None:
        ids = self._ids()
        if not ids:
            return
        try:
            settled = [str(pk) for pk in Run.objects.using(self.alias).filter(
                pk__in=ids, status__in=SETTLED).values_list("pk", flat=True)]
        finally:
            if not keep_connection:
                connections[self.alias].close()
        self.wake(settled)

    def _listen_postgresql(self) -> None:
        """LISTEN on this thread's own Django connection (thread-local: no request
        closes it), which also serves the periodic re-read."""
        connection = connections[self.alias]
        try:
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")
            self.wake(self._ids())  # anything that ended before LISTEN: re-read
            recheck = self._recheck_seconds()
            last = time.monotonic()
            while not self.stopping:
                # each notification as it arrives; back at least every second to see
                # whether to stop or re-read
                for notification in connection.connection.notifies(timeout=min(recheck, 1.0)):
                    self.wake([notification.payload])
                if time.monotonic() - last >= recheck:
                    last = time.monotonic()
                    self._recheck(keep_connection=True)
        finally:
            connection.close()

    def _listen_redis(self) -> None:
        pubsub = _redis().pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(_redis_channel())
            self.wake(self._ids())
            recheck = self._recheck_seconds()
            last = time.monotonic()
            while not self.stopping:
                message = pubsub.get_message(timeout=min(recheck, 1.0))
                if message and message.get("type") == "message":
                    data = message["data"]
                    self.wake([data.decode() if isinstance(data, bytes) else str(data)])
                if time.monotonic() - last >= recheck:
                    last = time.monotonic()
                    self._recheck()
        finally:
            pubsub.close()


_listener_lock = threading.Lock()
_the_listener: Listener | None = None


def _listener() -> Listener:
    """The process's listener, started on first use (after a fork: a new one)."""
    global _the_listener
    with _listener_lock:
        if _the_listener is None or _the_listener.pid != os.getpid():
            _the_listener = Listener(mode())
        return _the_listener


def stop_listener() -> None:
    """Stop this process's listener (a test's teardown: its connection must not
    outlive the test database). The next wait starts a new one."""
    global _the_listener
    with _listener_lock:
        listener, _the_listener = _the_listener, None
    if listener is not None:
        listener.stop()
