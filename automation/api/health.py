"""GET /healthz: database, broker and worker heartbeat, each checked for real.

The worker heartbeat has two sources, because django-q2 keeps its cluster stats in the
broker (Redis) or in Django's cache (ORM broker), and a local-memory cache is invisible
from the web process:
  * the cluster stats (`Stat.get_all()`), when the web process can see them;
  * the sweeper schedule, which only a running cluster's scheduler moves forward, so
    its `next_run` lagging far behind now means no cluster is running.
In synchronous mode (Q_CLUSTER sync) steps run in the web process and no worker is needed.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

SWEEPER_SCHEDULE = "entityflow-sweeper"


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def check_broker() -> str:
    from django_q.brokers import get_broker

    broker = get_broker()
    if broker.ping() is False:
        raise RuntimeError("the broker did not answer")
    broker.queue_size()  # ORM broker: a query on its table; Redis: LLEN
    return "ok"


def worker_heartbeat(now: datetime, max_age: float) -> tuple[datetime | None, bool]:
    """(newest sign of life, alive?) from the cluster stats, else the sweeper schedule."""
    beats = []
    try:
        from django_q.status import Stat

        beats = [s.timestamp for s in Stat.get_all() if getattr(s, "timestamp", None)]
    except Exception:  # noqa: BLE001,S110 - stats are one of two sources; the other decides
        pass
    if beats and (now - max(beats)).total_seconds() <= max_age:
        return max(beats), True
    from django_q.models import Schedule

    schedule = Schedule.objects.filter(name=SWEEPER_SCHEDULE).values("next_run", "minutes").first()
    if not schedule or not schedule["next_run"]:
        return (max(beats) if beats else None), False
    # A running scheduler fires about every 30 s and then moves next_run one interval ahead;
    # next_run staying in the past longer than max_age means no cluster is running.
    fired = schedule["next_run"] - timedelta(minutes=schedule["minutes"] or 1)
    newest = max([*beats, fired])
    return newest, (now - schedule["next_run"]).total_seconds() <= max_age


def check_worker(now: datetime) -> dict:
    if settings.Q_CLUSTER.get("sync"):
        return {"lastHeartbeat": None, "mode": "sync"}
    max_age = getattr(settings, "ENTITYFLOW_WORKER_HEARTBEAT_MAX_AGE_SECONDS", 60)
    beat, alive = worker_heartbeat(now, max_age)
    if not alive:
        last = beat.isoformat() if beat else "never"
        raise WorkerDown(f"no worker heartbeat within {max_age} s (last: {last})")
    return {"lastHeartbeat": beat.isoformat() if beat else None}


class WorkerDown(Exception):
    pass


@require_GET
def healthz(request):
    body: dict = {}
    errors: dict = {}
    checks = (("database", check_database), ("broker", check_broker),
              ("worker", lambda: check_worker(timezone.now())))
    for name, check in checks:
        try:
            body[name] = check()
        except Exception as exc:  # noqa: BLE001 - any failure means "down", named below
            body[name] = "down"
            errors[name] = str(exc) if isinstance(exc, WorkerDown) else type(exc).__name__
    if errors:
        body["errors"] = errors
    return JsonResponse(body, status=503 if errors else 200)
