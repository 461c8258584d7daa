"""Executions (one run, optionally with its steps) and the run list."""

from django.db.models import Prefetch
from rest_framework import serializers
from rest_framework.response import Response

from automation.api.base import PAGE_PARAMETERS, ApiView, get_or_404, paginate, validate_query
from automation.api.outputs import ExecutionSerializer, ExecutionWithStepsSerializer
from automation.api.schema import api_doc, paginated
from automation.models import Run, StepRun


def runs():
    return Run.objects.select_related("process", "version").prefetch_related(
        Prefetch("reruns", queryset=Run.objects.only("id", "rerun_of_id", "created_at")))


class ExecutionDetailApi(ApiView):
    class QuerySerializer(serializers.Serializer):
        expand = serializers.ChoiceField(choices=["steps"], required=False,
                                         help_text="`steps` adds one entry per step run.")

    @api_doc(parameters=[QuerySerializer], responses={200: ExecutionWithStepsSerializer},
             errors=(400, 404), summary="Get an execution (a run), with ?expand=steps")
    def get(self, request, id):
        query = validate_query(ExecutionDetailApi.QuerySerializer, request)
        run = get_or_404(runs(), "execution", pk=id)
        if query.get("expand") == "steps":
            run.expanded_steps = list(StepRun.objects.filter(run=run).select_related("parent")
                                      .order_by("id"))
            return Response(ExecutionWithStepsSerializer(run).data)
        return Response(ExecutionSerializer(run).data)


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
