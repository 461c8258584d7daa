"""Workflow definitions (API processes) in the JSON shape of docs/user-guide/processes.md."""

from django.utils.text import slugify
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from rest_framework import serializers, status
from rest_framework.response import Response

from automation.api.auth import django_user, principal, read_with_token
from automation.api.base import (
    IDEMPOTENCY_PARAMETER,
    PAGE_PARAMETERS,
    ApiView,
    StrictInput,
    found_or_404,
    get_or_404,
    idempotency_header,
    paginate,
    unprocessable,
    validate_input,
    validate_query,
)
from automation.api.outputs import (
    ExecutionIdSerializer,
    ExecutionResultSerializer,
    ProcessSerializer,
)
from automation.api.schema import (
    AnyJsonField,
    ObjectField,
    StepsField,
    TriggersField,
    api_doc,
    paginated,
)
from automation.api.waits import WAIT_PARAMETER, started_response, wait_seconds, waited_trigger
from automation.definitions.webhook_config import keep_stored_secrets
from automation.exceptions import RunStateError
from automation.models import ApiProcess
from automation.services.breaker import breaker_read_with
from automation.services.idempotency import run_start_once
from automation.services.processes import process_save, process_set_enabled
from entities.db.compiled import CompiledLookup
from entities.models import EntityType

SLUG = r"^[-a-zA-Z0-9_]+$"


def processes():
    return ApiProcess.objects.select_related("entity_type", "current_version", "breaker")


# Starting a run needs the process row and its circuit breaker's (the version's graph is
# cached), read in one statement: the API's busiest lookup, so its SQL is compiled once
# (entities.db.compiled). Only the columns a start reads (TRIGGER_READS): the rest (name,
# description, metadata, parameter schema, two time stamps) were converted for every
# trigger and never read, the time stamps by Django's own Python loader on PostgreSQL
# (docs/performance.md, "The API trigger's doorbell package and process columns").
# Anything else read from this instance would cost a query of its own: a test counts them.
TRIGGER_READS = ("slug", "enabled", "entity_type_id", "current_version_id", "breaker")
_TRIGGERED = CompiledLookup(
    lambda slug: ApiProcess.objects.select_related("breaker").only(*TRIGGER_READS)
    .filter(slug=slug))


class DefinitionInputSerializer(serializers.Serializer):
    """The documented definition shape, verbatim:
    {id?, name, description?, entityType?, enabled?, steps, triggers, metadata?, timezone?}."""

    id = serializers.RegexField(SLUG, max_length=100, required=False)
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    entityType = serializers.CharField(max_length=64, required=False, allow_null=True, default=None)
    enabled = serializers.BooleanField(required=False, default=True)
    steps = StepsField()
    triggers = TriggersField(required=False, default=list)
    priority = serializers.ChoiceField(
        choices=["high", "normal", "low"], required=False, allow_null=True, default=None,
        help_text="Which runs workers take first; a trigger or a batch may override it "
                  "(null: normal). See docs/user-guide/priority.md.")
    metadata = ObjectField(required=False, default=dict)
    timezone = serializers.CharField(
        max_length=64, required=False, allow_null=True, default=None,
        help_text="IANA time zone a wait step's `until` is read in; null: the server's.")
    parametersSchema = ObjectField(
        required=False, allow_null=True,
        help_text="JSON Schema every parameter set (POST /api/parameters) must match; null "
                  "for none. Left out: the stored one is kept.")
    version = serializers.IntegerField(required=False, allow_null=True,
                                       help_text="Ignored (output only).")
    # Output-only keys, accepted and ignored so that a body read with GET can be sent back.
    createdAt = serializers.DateTimeField(required=False, help_text="Ignored (output only).")
    updatedAt = serializers.DateTimeField(required=False, help_text="Ignored (output only).")
    paused = serializers.BooleanField(required=False, help_text="Ignored (output only): "
                                      "pause with POST /api/workflow-definitions/{id}/pause.")

    class Meta:
        ref_name = "WorkflowDefinitionInput"

    def validate_parametersSchema(self, value):
        if value is not None:
            try:
                Draft202012Validator.check_schema(value)
            except SchemaError as exc:
                raise serializers.ValidationError(
                    f"Not a valid JSON Schema: {exc.message}") from None
        return value


def save_definition(data: dict, *, slug: str, user,
                    process: ApiProcess | None = None) -> ApiProcess:
    """Save through process_save; webhook credentials the client left out (outputs never
    show them) are kept from the stored definition of `process`."""
    stored = process.definition.get("triggers", []) if process is not None else []
    triggers = keep_stored_secrets(data.get("triggers") or [], stored)
    entity_type = None
    if data.get("entityType"):
        entity_type = EntityType.objects.filter(key=data["entityType"]).first()
        if entity_type is None:
            raise unprocessable("entityType", f"No entity type '{data['entityType']}'.")
    extra = {"parameters_schema": data["parametersSchema"]} if "parametersSchema" in data else {}
    return process_save(
        slug=slug, name=data["name"], description=data.get("description") or "",
        definition={"steps": data["steps"], "triggers": triggers,
                    "timezone": data.get("timezone"),
                    **({"priority": data["priority"]} if data.get("priority") else {})},
        entity_type=entity_type, enabled=data.get("enabled", True),
        metadata=data.get("metadata") or {}, user=user, **extra)


def unique_slug(name: str) -> str:
    base = (slugify(name) or "process")[:90]
    slug, n = base, 1
    while ApiProcess.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


class DefinitionListApi(ApiView):
    class QuerySerializer(serializers.Serializer):
        enabled = serializers.BooleanField(required=False, allow_null=True, default=None)
        entityType = serializers.CharField(required=False)

    @api_doc(parameters=[QuerySerializer, *PAGE_PARAMETERS], errors=(400,),
             responses={200: paginated(ProcessSerializer, "PaginatedWorkflowDefinitionList")},
             summary="List workflow definitions")
    def get(self, request):
        query = validate_query(DefinitionListApi.QuerySerializer, request)
        qs = processes().order_by("slug")
        if query.get("enabled") is not None:
            qs = qs.filter(enabled=query["enabled"])
        if query.get("entityType"):
            qs = qs.filter(entity_type__key=query["entityType"])
        return paginate(request, self, qs, ProcessSerializer)


class DefinitionCreateApi(ApiView):
    @api_doc(request=DefinitionInputSerializer, responses={201: ProcessSerializer},
             errors=(400, 409, 413, 422), summary="Create a workflow definition")
    def post(self, request):
        data = validate_input(DefinitionInputSerializer, request.data)
        slug = data.get("id") or unique_slug(data["name"])
        if ApiProcess.objects.filter(slug=slug).exists():
            raise RunStateError(
                f"A workflow definition '{slug}' already exists; use PUT to change it.")
        process = save_definition(data, slug=slug, user=django_user(request))
        return Response(ProcessSerializer(process).data, status=status.HTTP_201_CREATED)


class DefinitionDetailApi(ApiView):
    @api_doc(responses={200: ProcessSerializer}, errors=(404,), summary="Get a workflow definition")
    def get(self, request, id):
        process = get_or_404(processes(), "workflow definition", slug=id)
        return Response(ProcessSerializer(process).data)


class DefinitionReplaceApi(ApiView):
    @api_doc(request=DefinitionInputSerializer, responses={200: ProcessSerializer},
             errors=(400, 404, 413, 422),
             summary="Replace a workflow definition (a changed definition is a new version)")
    def put(self, request, id):
        process = get_or_404(processes(), "workflow definition", slug=id)
        data = validate_input(DefinitionInputSerializer, request.data)
        if data.get("id") not in (None, process.slug):
            raise unprocessable("id", "The id in the body differs from the one in the URL.")
        process = save_definition(data, slug=process.slug, user=django_user(request),
                                  process=process)
        return Response(ProcessSerializer(process).data)


class DefinitionUpdateApi(ApiView):
    @api_doc(request=DefinitionInputSerializer(partial=True), responses={200: ProcessSerializer},
             errors=(400, 404, 413, 422), summary="Change some fields of a workflow definition")
    def patch(self, request, id):
        process = get_or_404(processes(), "workflow definition", slug=id)
        current = {"name": process.name, "description": process.description,
                   "entityType": process.entity_type.key if process.entity_type else None,
                   "enabled": process.enabled, "metadata": process.metadata,
                   "parametersSchema": process.parameters_schema,
                   "steps": process.definition.get("steps", []),
                   "triggers": process.definition.get("triggers", []),
                   "timezone": process.definition.get("timezone"),
                   "priority": process.definition.get("priority")}
        data = validate_input(DefinitionInputSerializer, {**current, **request.data}
                              if isinstance(request.data, dict) else request.data)
        if data.get("id") not in (None, process.slug):
            raise unprocessable("id", "The id in the body differs from the one in the URL.")
        process = save_definition(data, slug=process.slug, user=django_user(request),
                                  process=process)
        return Response(ProcessSerializer(process).data)


class DefinitionDisableApi(ApiView):
    @api_doc(responses={204: None}, errors=(404,),
             summary="Disable a workflow definition (its runs and versions are kept)")
    def delete(self, request, id):
        process_set_enabled(process=get_or_404(processes(), "workflow definition", slug=id),
                            enabled=False)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DefinitionTriggerApi(ApiView):
    class InputSerializer(StrictInput):
        input = AnyJsonField(required=False, default=dict, allow_null=True,
                             help_text="Any JSON value; the steps see it as `input` "
                                       "(null or left out: {}).")

    # the process is read in the token's statement (automation.api.auth.read_with_token)
    reads_with_token = (_TRIGGERED, "id")

    @api_doc(request=InputSerializer,
             responses={200: ExecutionResultSerializer, 202: ExecutionIdSerializer},
             errors=(400, 404, 409, 413, 422), parameters=[IDEMPOTENCY_PARAMETER, WAIT_PARAMETER],
             summary="Start a run of a workflow definition (202), or wait for its result (200)")
    def post(self, request, id):
        process = breaker_read_with(found_or_404(read_with_token(request, _TRIGGERED, id),
                                                 "workflow definition"))
        wait = wait_seconds(request)
        data = validate_input(DefinitionTriggerApi.InputSerializer, request.data)
        if process.entity_type_id is not None:
            raise unprocessable("entity", f"'{process.slug}' runs for one entity: start it "
                                          "with POST /api/entities/{id}/process.")
        run, _ = run_start_once(
            process=process, principal=principal(request), key=idempotency_header(request),
            trigger=waited_trigger({"type": "manual", "source": "api", "by": principal(request)},
                                   wait),
            input=data["input"], user=django_user(request))
        return started_response(run, wait, lambda run: {"executionId": run.pk})
