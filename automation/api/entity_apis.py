"""Entity types, entities, and processing one entity (or previewing it with dryRun)."""

from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers
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
from automation.api.outputs import (
    EntitySerializer,
    ExecutionIdSerializer,
    ExecutionResultSerializer,
)
from automation.api.schema import AnyJsonField, ObjectField, api_doc, paginated
from automation.api.waits import WAIT_PARAMETER, started_response, wait_seconds, waited_trigger
from automation.models import ApiProcess
from automation.services.dry_run import dry_run
from automation.services.idempotency import run_start_once
from entities.models import EntityType
from entities.selectors import entity_list


class EntityTypeSerializer(serializers.Serializer):
    class StatusSerializer(serializers.Serializer):
        key = serializers.CharField()
        label = serializers.CharField()
        color = serializers.CharField()
        isInitial = serializers.BooleanField(source="is_initial")
        isFinal = serializers.BooleanField(source="is_final")

        class Meta:
            ref_name = "EntityStatus"

    class TransitionSerializer(serializers.Serializer):
        source = serializers.CharField(source="source.key")
        target = serializers.CharField(source="target.key")

        class Meta:
            ref_name = "EntityTransition"

    key = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    schema = ObjectField()
    statuses = StatusSerializer(many=True, source="statuses.all")
    transitions = TransitionSerializer(many=True, source="transitions.all")

    class Meta:
        ref_name = "EntityType"


def entity_types():
    return EntityType.objects.prefetch_related("statuses", "transitions__source",
                                               "transitions__target")


class EntityTypeListApi(ApiView):
    @api_doc(parameters=PAGE_PARAMETERS,
             responses={200: paginated(EntityTypeSerializer, "PaginatedEntityTypeList")},
             summary="List entity types")
    def get(self, request):
        return paginate(request, self, entity_types().order_by("key"), EntityTypeSerializer)


class EntityTypeDetailApi(ApiView):
    @api_doc(responses={200: EntityTypeSerializer}, errors=(404,), summary="Get an entity type")
    def get(self, request, key):
        entity_type = get_or_404(entity_types(), "entity type", key=key)
        return Response(EntityTypeSerializer(entity_type).data)


class EntityListApi(ApiView):
    class QuerySerializer(serializers.Serializer):
        type = serializers.CharField(required=False, help_text="Entity type key.")
        status = serializers.CharField(required=False)
        updatedSince = serializers.DateTimeField(required=False)
        search = serializers.CharField(required=False, help_text="Part of the reference.")

    @api_doc(parameters=[QuerySerializer, *PAGE_PARAMETERS], errors=(400,),
             responses={200: paginated(EntitySerializer, "PaginatedEntityList")},
             summary="List entities, newest first")
    def get(self, request):
        query = validate_query(EntityListApi.QuerySerializer, request)
        qs = entity_list(entity_type=query.get("type"), status=query.get("status"),
                         search=query.get("search"))
        if query.get("updatedSince"):
            qs = qs.filter(updated_at__gte=query["updatedSince"])
        return paginate(request, self, qs.order_by("-created_at", "id"), EntitySerializer)


class EntityDetailApi(ApiView):
    @api_doc(responses={200: EntitySerializer}, errors=(404,), summary="Get an entity")
    def get(self, request, id):
        return Response(EntitySerializer(get_or_404(entity_list(), "entity", pk=id)).data)


class DryRunSerializer(serializers.Serializer):
    process = serializers.CharField()
    version = serializers.IntegerField(allow_null=True)
    entity = ObjectField()
    applicable = serializers.BooleanField(help_text="The process is for this entity's type.")
    enabled = serializers.BooleanField()
    steps = serializers.ListField(child=ObjectField(),
                                  help_text="{id, type, name, wouldRun: yes|maybe, condition?, "
                                            "value?, evaluation?, error?, approvers?, items?}")
    skipped = serializers.ListField(child=serializers.CharField())
    unmetRequirements = AnyJsonField()

    class Meta:
        ref_name = "DryRun"


class EntityProcessApi(ApiView):
    class InputSerializer(serializers.Serializer):
        process = serializers.CharField(max_length=100, help_text="Workflow definition id.")
        dryRun = serializers.BooleanField(required=False, default=False)
        input = ObjectField(required=False, default=dict)

    @api_doc(request=InputSerializer, errors=(400, 404, 409, 413, 422),
             responses={200: PolymorphicProxySerializer(
                 component_name="EntityProcessReply",
                 serializers=[DryRunSerializer, ExecutionResultSerializer],
                 resource_type_field_name=None), 202: ExecutionIdSerializer},
             parameters=[IDEMPOTENCY_PARAMETER, WAIT_PARAMETER],
             summary="Run a process for this entity (202), wait for its result with ?wait "
                     "(200), or preview it with dryRun (200)")
    def post(self, request, id):
        entity = get_or_404(entity_list(), "entity", pk=id)
        wait = wait_seconds(request)
        data = validate_input(EntityProcessApi.InputSerializer, request.data)
        process = (ApiProcess.objects.select_related("current_version")
                   .filter(slug=data["process"]).first())
        if process is None:
            raise unprocessable("process", f"No workflow definition '{data['process']}'.")
        if process.entity_type_id not in (None, entity.entity_type_id):
            raise unprocessable("process", f"'{process.slug}' is for {process.entity_type.key} "
                                           f"entities, not {entity.entity_type.key}.")
        if data["dryRun"]:
            return Response(dry_run(process=process, entity=entity))
        run, _ = run_start_once(
            process=process, principal=principal(request), key=idempotency_header(request),
            trigger=waited_trigger({"type": "manual", "source": "api", "by": principal(request)},
                                   wait),
            input=data["input"], entity=entity, user=django_user(request))
        return started_response(run, wait, lambda run: {"executionId": run.pk})
