"""The API scenario's floor (bench/scenarios/api.py): the least any trigger must do, with
none of the engine's request machinery. Served only by the bench's gunicorn
(bench/settings.py, bench/urls.py).

Per request: the token check and the process look-up the trigger makes (by slug, with
its breaker: definition_apis' compiled look-up), read in one statement as the trigger
reads them (services.api_auth.token_client_with), the run's row and its first
step's written durably in one transaction exactly as the engine's start writes them,
the step's doorbell rung as the engine rings it (store.doorbell: on SQLite an INSERT in
the queue's own file, with Redis the push), and a 202 with the run's id. No DRF, no
admission rules, no idempotency, no trace, no model instance of the run or its step.

The statements are the engine's: each server process starts its first floor run of a
process with the engine's own `run_start` and captures what it sends (bench.replay),
then sends them again for every later request with a fresh run id, time and input, the
way the engine sends them (SQLite: one `BEGIN IMMEDIATE` … `COMMIT` on the driver's
handle; PostgreSQL: the one start statement, its values bound by the server). So a
floor run is a real run, which a worker executes like any other. Captured per process
slug once per server process: a process changed meanwhile is not seen (the bench does
not change it).
"""

import json
import threading
import uuid
from dataclasses import dataclass

from django.db import connections, router
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from rest_framework.authentication import get_authorization_header

from automation.api.definition_apis import _TRIGGERED
from automation.models import Run, StepRun
from automation.services.api_auth import ApiAuthError, token_client_with
from automation.services.runs import run_start
from automation.store.doorbell import enqueue_step, queue_shares
from automation.store.graphs import graph_for
from automation.store.policy import step_timeout_seconds
from bench import replay
from entities.db import driver, prepared

FLOOR_PATH = "bench/floor/"  # + the process slug, as the trigger's URL names it
MARKER = "bench-floor-input"


@dataclass(frozen=True)
class _Start:
    """A captured start: its statements [(sql, params, slots)] and its doorbell's
    timeout and priority (what the engine rings it with)."""

    statements: list
    timeout: int | None
    priority: str


_starts: dict[str, _Start] = {}
_lock = threading.Lock()
_INPUT = Run._meta.get_field("input")
_USING = router.db_for_write(StepRun)


@csrf_exempt
def floor(request, slug: str):
    # the token and the process in one statement, as the trigger reads them (auth's
    # reads_with_token): one round trip on PostgreSQL
    parts = get_authorization_header(request).split()
    try:
        if len(parts) != 2 or parts[0].lower() != b"bearer":
            raise ApiAuthError
        client, process = token_client_with(parts[1].decode("ascii"), _TRIGGERED, slug)
    except (ApiAuthError, UnicodeDecodeError):
        return JsonResponse({"error": "unauthenticated"}, status=401)
    if process is None:
        return JsonResponse({"error": "not found"}, status=404)
    data = json.loads(request.body or b"{}")
    given = data.get("input") if isinstance(data, dict) else None
    start = _starts.get(slug)
    if start is None:
        with _lock:  # this request's run is the one captured
            start = _starts.get(slug)
            if start is None:
                run_id = _capture(process, f"client:{client.pk}")
                return JsonResponse({"executionId": str(run_id)}, status=202)
    run_id = uuid.uuid4()
    step_run_id = _write(start, run_id, {} if given is None else given)
    enqueue_step(step_run_id, timeout=start.timeout, priority=start.priority)
    return JsonResponse({"executionId": str(run_id)}, status=202)


def _write(start: _Start, run_id: uuid.UUID, given) -> int:
    """The captured start's statements with this run's values, in one transaction as the
    store sends them (store.base / store.postgresql `start`): the first step run's id."""
    connection = connections[_USING]
    now = timezone.now()
    input = _INPUT.get_db_prep_value(given, connection)
    values = [(sql, replay.filled(params, plan, run_id=run_id, now=now, claims={}, input=input))
              for sql, params, plan in start.statements]
    if connection.vendor == "sqlite":
        with driver.transaction(using=_USING):
            for sql, params in values:
                cursor = driver.execute(sql, params, using=_USING)
        return cursor.lastrowid
    (sql, params), = values
    return prepared.fetch_one_alone(sql, params, using=_USING)[0]


def _capture(process, by: str) -> uuid.UUID:
    """Start one run with the engine's run_start, as the trigger starts it, keeping the
    statements it writes with; the floor's first run of `process` in this server
    process. Fails loudly where the floor could not write what the engine writes."""
    connection = connections[_USING]
    if (connection.vendor == "sqlite" and queue_shares(_USING)) or connection.in_atomic_block:
        raise RuntimeError("the floor replays a start of its own transaction, outside any "
                           "other, with the doorbell sent after it (not the ORM broker on "
                           "the engine's database)")
    marker = uuid.uuid4().hex
    with replay.captured(_USING) as log:
        run, _ = run_start(process=process, input={MARKER: marker},
                           trigger={"type": "manual", "source": "api", "by": by})
    writes = [(sql, params) for sql, params in log
              if prepared.first_words(sql)[0] in ("INSERT", "WITH")]
    expected = 2 if connection.vendor == "sqlite" else 1  # run, step; PostgreSQL: one CTE
    statements = [(sql, params, replay.slots(params, run=run.pk, input_marker=marker))
                  for sql, params in writes]
    kinds = [kind for _, _, plan in statements for _, kind, _ in plan]
    if len(writes) != expected or kinds.count("input") != 2 or "run" not in kinds:
        raise RuntimeError(f"the engine's start wrote {len(writes)} statements (expected "
                           f"{expected}) with {kinds.count('input')} inputs: update "
                           "bench/trigger_floor.py")
    graph = graph_for(run.version_id)
    _starts[process.slug] = _Start(statements, step_timeout_seconds(graph.steps[graph.start]),
                                   run.priority)
    return run.pk


def written(slug: str) -> dict:
    """What the floor (or anything) wrote for the process `slug`: its runs, their step
    rows, and the queued doorbells that ring for those steps."""
    from django_q.signing import SignedPackage

    from automation.store.doorbell import queue_broker, steps_rung

    steps = set(StepRun.objects.filter(run__process__slug=slug).values_list("pk", flat=True))
    broker = queue_broker()
    rung = [pk for package in broker.peek(broker.queue_size() or 1)
            for pk in steps_rung(SignedPackage.loads(package))]
    return {"runs": Run.objects.filter(process__slug=slug).count(), "steps": len(steps),
            "doorbells": sum(pk in steps for pk in rung)}


def check(slug: str, answered: int, *, unanswered: int = 0) -> None:
    """After the load: every 202 the floor answered is a run with its step row and its
    doorbell (a floor that skipped work would flatter nothing), and one of them executes
    to completion with the worker's own task, here. Raises otherwise. `unanswered`:
    requests whose answer the client did not read (an error), which may have written."""
    from automation.tasks import step_execute

    found = written(slug)
    if len(set(found.values())) != 1 or not \
            answered <= found["runs"] <= answered + unanswered:
        raise RuntimeError(f"the floor answered {answered} × 202 ({unanswered} more "
                           f"unanswered) but wrote {found}")
    step_run = StepRun.objects.filter(run__process__slug=slug).order_by("-pk").first()
    step_execute(step_run.pk)
    run = Run.objects.get(pk=step_run.run_id)
    if run.status != Run.Status.COMPLETED:
        raise RuntimeError(f"a floor run did not complete: {run.pk} is {run.status}")
