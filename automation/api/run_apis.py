"""Executions (one run, optionally with its steps and their logs), cancelling one, and
the run list."""

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiExample
from rest_framework import serializers
from rest_framework.response import Response

from automation.api.base import (
    PAGE_PARAMETERS,
    ApiView,
    CommaSeparated,
    get_or_404,
    paginate,
    validate_query,
)
from automation.api.outputs import ExecutionSerializer, ExecutionWithStepsSerializer
from automation.api.schema import api_doc, paginated
from automation.models import Run, StepRun
from automation.services.runs import run_cancel

EXPANSIONS = ("steps", "logs")
EXECUTION_EXAMPLE = {
    "id": "5f0c2b8e-9d1a-4c3e-8b7f-2a6d4e1c9b03", "status": "cancelled", "result": None,
    "error": {"message": "Cancelled.", "step": None, "code": "cancelled"},
    "workflowDefinitionId": "ship-order", "version": 3, "caseId": None, "entityId": None,
    "batchId": None, "trigger": {"type": "manual", "source": "api"},
    "createdAt": "2026-01-05T09:30:00Z", "startedAt": "2026-01-05T09:30:01Z",
    "finishedAt": "2026-01-05T09:31:00Z"}


def runs():
    return Run.objects.select_related("process", "version").prefetch_related(
        Prefetch("reruns", queryset=Run.objects.only("id", "rerun_of_id", "created_at")))


class ExecutionDetailApi(ApiView):
    class QuerySerializer(serializers.Serializer):
        expand = CommaSeparated(EXPANSIONS, required=False,
                                help_text="`steps` adds one entry per step run; `steps,logs` "
                                          "(or `logs`) adds each step's log lines too.")

    @api_doc(parameters=[QuerySerializer], responses={200: ExecutionWithStepsSerializer},
             errors=(400, 404), summary="Get an execution (a run), with ?expand=steps,logs")
    def get(self, request, id):
        query = validate_query(ExecutionDetailApi.QuerySerializer, request)
        run = get_or_404(runs(), "execution", pk=id)
        expand = query.get("expand") or set()
        if expand:
            run.expanded_steps = list(StepRun.objects.filter(run=run).select_related("parent")
                                      .order_by("id"))
            return Response(ExecutionWithStepsSerializer(
                run, context={"logs": "logs" in expand}).data)
        return Response(ExecutionSerializer(run).data)


class ExecutionCancelApi(ApiView):
    @api_doc(request=None, responses={200: ExecutionSerializer}, errors=(404, 409),
             summary="Cancel an execution that has not finished (409 if it has)",
             examples=[OpenApiExample("Cancelled", response_only=True, status_codes=["200"],
                                      value=EXECUTION_EXAMPLE)])
    def post(self, request, id):
        """Steps not yet finished are cancelled and open approvals closed; a step running
        at that moment finishes, but what it records is ignored and nothing follows it."""
        run = get_or_404(runs(), "execution", pk=id)
        run_cancel(run=run)
        return Response(ExecutionSerializer(get_or_404(runs(), "execution", pk=id)).data)


class RunListApi(ApiView):
    class QuerySerializer(serializers.Serializer):
        process = serializers.CharField(required=False, help_text="Workflow definition id.")
        status = serializers.ChoiceField(choices=Run.Status.choices, required=False)
        entity = serializers.UUIDField(required=False, help_text="Entity (or case) id.")
        batch = serializers.UUIDField(required=False)
        createdFrom = serializers.DateTimeField(required=False)
        createdTo = serializers.DateTimeField(required=False)

    @api_doc(parameters=[QuerySerializer, *PAGE_PARAMETERS], errors=(400,),
             responses={200: paginated(ExecutionSerializer, "PaginatedExecutionList")},
             summary="List runs, newest first")
    def get(self, request):
        query = validate_query(RunListApi.QuerySerializer, request)
        lookups = {"process": "process__slug", "status": "status", "entity": "entity_id",
                   "batch": "batch_id", "createdFrom": "created_at__gte",
                   "createdTo": "created_at__lte"}
        qs = runs().filter(**{lookups[k]: v for k, v in query.items() if v is not None})
        return paginate(request, self, qs.order_by("-created_at", "id"), ExecutionSerializer)
