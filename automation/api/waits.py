"""`?wait=<seconds>` on the endpoints that start a run: a synchronous reply when the run
ends in time (docs/rest-api.md, "Synchronous replies")."""

from collections.abc import Callable

from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.response import Response

from automation.api.base import QueryInvalid
from automation.api.outputs import ExecutionResultSerializer
from automation.models import Run
from automation.services.runs import run_wait
from automation.store.waiting import MAX_WAIT_SECONDS

WAIT_PARAMETER = OpenApiParameter(
    "wait", {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS}, required=False,
    description=f"Wait up to this many seconds (1 to {MAX_WAIT_SECONDS}) for the run to end: "
                "200 with its status and result when it ends in time, else (or as soon as "
                "it waits for people) 202 as without it. The waiting request holds no "
                "database connection.")


def wait_seconds(request) -> int:
    """`?wait=` as whole seconds, 0 when absent; 400 naming `wait` otherwise."""
    raw = request.query_params.get("wait")
    if raw is None or raw == "":
        return 0
    try:
        seconds = int(raw)
    except ValueError:
        seconds = -1
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise QueryInvalid({"wait": [f"wait must be a whole number of seconds from 0 to "
                                     f"{MAX_WAIT_SECONDS}."]})
    return seconds


def waited_trigger(trigger: dict, seconds: int) -> dict:
    """The run's trigger, marked so that its end is announced to the waiting request."""
    return {**trigger, "wait": seconds} if seconds else trigger


def started_response(run: Run, seconds: int, accepted: Callable[[Run], dict]) -> Response:
    """202 with `accepted(run)` as today; with `seconds`, 200 and the result when the run
    ends within them."""
    if seconds:
        run = run_wait(run_id=run.pk, seconds=seconds)
        if run.status in Run.FINISHED:
            return Response(ExecutionResultSerializer(run).data, status=status.HTTP_200_OK)
    return Response(accepted(run), status=status.HTTP_202_ACCEPTED)
