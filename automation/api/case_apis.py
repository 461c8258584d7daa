"""The case flow (docs/rest-api.md): cases, parameter sets, workflow runs and their results."""

from rest_framework import serializers, status
from rest_framework.response import Response

from automation.api.auth import django_user, principal
from automation.api.base import (
    IDEMPOTENCY_PARAMETER,
    PAGE_PARAMETERS,
    ApiView,
    get_or_404,
    idempotency_header,
    paginate,
    unprocessable,
    validate_input,
    validate_query,
)
from automation.api.outputs import CaseSerializer, ExecutionResultSerializer
from automation.api.schema import ObjectField, api_doc, paginated
from automation.api.services import CASE_FIELDS, CASE_TYPE, case_create, parameters_create
from automation.api.waits import WAIT_PARAMETER, started_response, wait_seconds, waited_trigger
from automation.exceptions import RunStateError
from automation.models import ApiProcess, Parameters, Run
from automation.services.idempotency import run_start_once
from entities.models import Entity


class RunNotFinishedError(RunStateError):
    code = "not_finished"
    default_message = "The workflow run has not finished yet."


def cases():
    return Entity.objects.select_related("entity_type").filter(entity_type__key=CASE_TYPE)


def runs():
    return Run.objects.select_related("process", "version")


def process_from_body(slug: str, field: str = "workflowDefinitionId") -> ApiProcess:
    process = ApiProcess.objects.select_related("current_version").filter(slug=slug).first()
    if process is None:
        raise unprocessable(field, f"No workflow definition '{slug}'.")
    return process


class CaseCreateApi(ApiView):
    class InputSerializer(serializers.Serializer):
        firstName = serializers.CharField(max_length=100, required=False, allow_blank=True)
        lastName = serializers.CharField(max_length=100, required=False, allow_blank=True)
        personalNumber = serializers.CharField(max_length=50, required=False, allow_blank=True)
        email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
        phone = serializers.CharField(max_length=50, required=False, allow_blank=True)
        companyName = serializers.CharField(max_length=200, required=False, allow_blank=True)
        companyNumber = serializers.CharField(max_length=50, required=False, allow_blank=True)
        companyAddress = serializers.CharField(max_length=300, required=False, allow_blank=True)

    @api_doc(request=InputSerializer, responses={201: CaseSerializer}, errors=(400, 413, 422),
             summary="Create a case")
    def post(self, request):
        data = validate_input(CaseCreateApi.InputSerializer, request.data)
        case = case_create(data={key: data[key] for key in CASE_FIELDS if key in data})
        return Response(CaseSerializer(case).data, status=status.HTTP_201_CREATED)


class CaseListApi(ApiView):
    class QuerySerializer(serializers.Serializer):
        personalNumber = serializers.CharField(max_length=50, required=False)
        companyNumber = serializers.CharField(max_length=50, required=False)
        email = serializers.CharField(max_length=254, required=False,
                                      help_text="Matched without regard to case.")

    @api_doc(parameters=[QuerySerializer, *PAGE_PARAMETERS], errors=(400,),
             responses={200: paginated(CaseSerializer, "PaginatedCaseList")},
             summary="Find cases (a returning person's or company's), newest first")
    def get(self, request):
        """Every filter given must match (personalNumber and companyNumber exactly, email
        without regard to case); with none, every case is listed."""
        query = validate_query(CaseListApi.QuerySerializer, request)
        items = cases()
        if "personalNumber" in query:
            items = items.filter(data__personalNumber=query["personalNumber"])
        if "companyNumber" in query:
            items = items.filter(data__companyNumber=query["companyNumber"])
        if "email" in query:
            items = items.filter(data__email__iexact=query["email"])
        return paginate(request, self, items.order_by("-created_at", "id"), CaseSerializer)


class CaseDetailApi(ApiView):
    @api_doc(responses={200: CaseSerializer}, errors=(404,), summary="Get a case")
    def get(self, request, id):
        return Response(CaseSerializer(get_or_404(cases(), "case", pk=id)).data)


class ParametersSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    workflowDefinitionId = serializers.CharField(source="process.slug")
    parameters = ObjectField()
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        ref_name = "Parameters"


def parameter_sets():
    return Parameters.objects.select_related("process")


class ParametersCreateApi(ApiView):
    class InputSerializer(serializers.Serializer):
        workflowDefinitionId = serializers.CharField(max_length=100)
        parameters = ObjectField()

    @api_doc(request=InputSerializer, responses={201: ParametersSerializer},
             errors=(400, 413, 422),
             summary="Store a parameter set for runs of one workflow definition")
    def post(self, request):
        """Checked against the definition's `parametersSchema` when it has one (422 naming
        each failing path, e.g. `parameters.amount`)."""
        data = validate_input(ParametersCreateApi.InputSerializer, request.data)
        row = parameters_create(process=process_from_body(data["workflowDefinitionId"]),
                                parameters=data["parameters"])
        return Response(ParametersSerializer(row).data, status=status.HTTP_201_CREATED)


class ParametersListApi(ApiView):
    class QuerySerializer(serializers.Serializer):
        workflowDefinitionId = serializers.CharField(max_length=100, required=False)

    @api_doc(parameters=[QuerySerializer, *PAGE_PARAMETERS], errors=(400,),
             responses={200: paginated(ParametersSerializer, "PaginatedParametersList")},
             summary="List parameter sets, newest first")
    def get(self, request):
        query = validate_query(ParametersListApi.QuerySerializer, request)
        items = parameter_sets()
        if "workflowDefinitionId" in query:
            items = items.filter(process__slug=query["workflowDefinitionId"])
        return paginate(request, self, items.order_by("-created_at", "id"), ParametersSerializer)


class ParametersDetailApi(ApiView):
    @api_doc(responses={200: ParametersSerializer}, errors=(404,), summary="Get a parameter set")
    def get(self, request, id):
        return Response(ParametersSerializer(
            get_or_404(parameter_sets(), "parameter set", pk=id)).data)


class WorkflowSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    caseId = serializers.UUIDField(source="entity_id", allow_null=True)
    status = serializers.CharField()

    class Meta:
        ref_name = "Workflow"


class WorkflowRunApi(ApiView):
    class InputSerializer(serializers.Serializer):
        caseId = serializers.UUIDField()
        workflowDefinitionId = serializers.CharField(max_length=100)
        parametersId = serializers.UUIDField(required=False, allow_null=True)

    @api_doc(request=InputSerializer,
             responses={200: ExecutionResultSerializer, 202: WorkflowSerializer},
             errors=(400, 409, 413, 422), parameters=[IDEMPOTENCY_PARAMETER, WAIT_PARAMETER],
             summary="Run a workflow definition for a case (202), or wait for its result (200)")
    def post(self, request):
        wait = wait_seconds(request)
        data = validate_input(WorkflowRunApi.InputSerializer, request.data)
        case = cases().filter(pk=data["caseId"]).first()
        if case is None:
            raise unprocessable("caseId", "No case with that id.")
        process = process_from_body(data["workflowDefinitionId"])
        parameters = {}
        if data.get("parametersId"):
            row = Parameters.objects.filter(pk=data["parametersId"], process=process).first()
            if row is None:
                raise unprocessable("parametersId", "No parameter set with that id for this "
                                                    "workflow definition.")
            parameters = row.parameters
        run, _ = run_start_once(
            process=process, principal=principal(request), key=idempotency_header(request),
            trigger=waited_trigger({"type": "api", "by": principal(request)}, wait),
            input={"caseId": str(case.pk)}, parameters=parameters, entity=case,
            user=django_user(request))
        return started_response(run, wait, lambda run: WorkflowSerializer(run).data)


class WorkflowDetailApi(ApiView):
    @api_doc(responses={200: WorkflowSerializer}, errors=(404,), summary="Status of a workflow run")
    def get(self, request, id):
        return Response(WorkflowSerializer(get_or_404(runs(), "workflow run", pk=id)).data)


class WorkflowResultApi(ApiView):
    class OutputSerializer(WorkflowSerializer):
        createdAt = serializers.DateTimeField(source="created_at")
        finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)
        result = serializers.JSONField(allow_null=True)
        error = serializers.JSONField(allow_null=True)

    @api_doc(responses={200: OutputSerializer}, errors=(404, 409),
             summary="Result of a finished workflow run (409 while it is still going)")
    def get(self, request, id):
        run = get_or_404(runs(), "workflow run", pk=id)
        if not run.is_finished:
            raise RunNotFinishedError(
                f"The workflow run has not finished yet (status {run.status}).")
        return Response(WorkflowResultApi.OutputSerializer(run).data)
