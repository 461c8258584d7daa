"""Entity types, entities (read, create, update, move, upsert by reference), and
processing one entity (or previewing it with dryRun). Every write goes through
entities.services, so it fires exactly the events an admin save fires."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, PolymorphicProxySerializer
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from automation.api.auth import django_user, principal
from automation.api.base import (
    IDEMPOTENCY_PARAMETER,
    PAGE_PARAMETERS,
    ApiView,
    StrictInput,
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
from entities.exceptions import (
    EntityDataInvalidError,
    StaleEntityError,
    TransitionNotAllowedError,
)
from entities.models import Entity, EntityType
from entities.selectors import entity_list
from entities.services import entity_create, entity_transition, entity_update


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
    class InputSerializer(StrictInput):
        process = serializers.CharField(max_length=100, help_text="Workflow definition id.")
        dryRun = serializers.BooleanField(required=False, default=False)
        input = AnyJsonField(required=False, default=dict, allow_null=True,
                             help_text="Any JSON value; the steps see it as `input` "
                                       "(null or left out: {}).")

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


# -- writing entities ------------------------------------------------------------------

IF_MATCH_PARAMETER = OpenApiParameter(
    "If-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="The entity's `version` as read (`3` or `\"3\"`); a stale one is a 409 and "
                "nothing is written. Same as `version` in the body.")
ENTITY_EXAMPLE = {
    "id": "0b6f3c1e-2a4d-4f8e-9c51-7d2b8e4a1f90", "type": "order", "reference": "ORD-1042",
    "status": "received", "data": {"email": "buyer@example.com", "total": 120},
    "version": 1, "unmetRequirements": [], "createdAt": "2026-01-05T09:30:00Z",
    "updatedAt": "2026-01-05T09:30:00Z"}


class TransitionConflict(APIException):
    """A move the entity's type does not allow from its status (or whose requirements
    do not hold): 409, the reasons in `fields.to`."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"

    def __init__(self, error: TransitionNotAllowedError):
        self.fields = {"to": list((error.fields or {}).get("status") or [error.message])}
        super().__init__(error.message)


def _move(entity: Entity, to: str, *, expected_version: int | None = None) -> Entity:
    try:
        return entity_transition(entity=entity, to_status=to, expected_version=expected_version)
    except TransitionNotAllowedError as error:
        raise TransitionConflict(error) from None


def _initial_status(entity_type: EntityType, status_key: str | None) -> str | None:
    """`status` of a new entity: one of its type's initial statuses (or None: the default)."""
    if status_key is None:
        return None
    initial = sorted(s.key for s in entity_type.statuses.all() if s.is_initial)
    if status_key not in initial:
        raise unprocessable("status", f"A new {entity_type.key} starts in one of its initial "
                                      f"statuses: {', '.join(initial) or 'none'}.")
    return status_key


def _entity_type_or_422(key: str) -> EntityType:
    entity_type = entity_types().filter(key=key).first()
    if entity_type is None:
        raise unprocessable("type", f"No entity type '{key}'.")
    return entity_type


def _expected_version(request, body_version: int | None) -> int | None:
    """The version the writer read: `If-Match` or `version` in the body (they must agree)."""
    raw = request.headers.get("If-Match")
    header = None
    if raw is not None:
        text = raw.strip().removeprefix("W/").strip('"')
        if not text.isdigit():
            raise unprocessable("If-Match", "Send the entity's version, e.g. If-Match: 3.")
        header = int(text)
    if header is not None and body_version is not None and header != body_version:
        raise unprocessable("version", f"The body says version {body_version}, If-Match says "
                                       f"{header}.")
    return header if header is not None else body_version


def _entity_response(entity: Entity, code: int = status.HTTP_200_OK) -> Response:
    entity = entity_list().get(pk=entity.pk)
    response = Response(EntitySerializer(entity).data, status=code)
    response["ETag"] = f'"{entity.version}"'
    return response


class EntityCreateApi(ApiView):
    class InputSerializer(StrictInput):
        type = serializers.CharField(max_length=64, help_text="Entity type key.")
        reference = serializers.CharField(max_length=200,
                                          help_text="Unique within the type, e.g. ORD-1042.")
        data = ObjectField(required=False, default=dict,
                           help_text="Checked against the type's JSON Schema.")
        status = serializers.CharField(max_length=64, required=False,
                                       help_text="One of the type's initial statuses "
                                                 "(default: its first).")

    @api_doc(request=InputSerializer, responses={201: EntitySerializer},
             errors=(400, 413, 422), summary="Create an entity (fires entity.created)",
             examples=[OpenApiExample("Create an order", request_only=True, value={
                 "type": "order", "reference": "ORD-1042",
                 "data": {"email": "buyer@example.com", "total": 120}}),
                 OpenApiExample("Created", response_only=True, status_codes=["201"],
                                value=ENTITY_EXAMPLE)])
    def post(self, request):
        data = validate_input(EntityCreateApi.InputSerializer, request.data)
        entity_type = _entity_type_or_422(data["type"])
        entity = entity_create(entity_type=entity_type, reference=data["reference"],
                               data=data["data"],
                               status=_initial_status(entity_type, data.get("status")))
        return _entity_response(entity, status.HTTP_201_CREATED)


class EntityUpdateApi(ApiView):
    class InputSerializer(StrictInput):
        data = ObjectField(required=False,
                           help_text="Merged into the entity's data (mode merge, the "
                                     "default) or replacing it (mode replace). Left out: "
                                     "nothing is written (the version is still checked).")
        mode = serializers.ChoiceField(choices=["merge", "replace"], required=False,
                                       default="merge")
        version = serializers.IntegerField(required=False, min_value=1,
                                           help_text="The version you read; same as If-Match.")

    @api_doc(request=InputSerializer, responses={200: EntitySerializer},
             errors=(400, 404, 409, 413, 422), parameters=[IF_MATCH_PARAMETER],
             summary="Update an entity's data (fires entity.updated; requirements settle "
                     "its status)",
             examples=[OpenApiExample("Merge a field", request_only=True, value={
                 "data": {"total": 150}, "version": 1}),
                 OpenApiExample("Updated", response_only=True, status_codes=["200"],
                                value={**ENTITY_EXAMPLE, "data": {"email": "buyer@example.com",
                                                                   "total": 150},
                                       "version": 2})])
    def patch(self, request, id):
        entity = get_or_404(entity_list(), "entity", pk=id)
        data = validate_input(EntityUpdateApi.InputSerializer, request.data)
        expected = _expected_version(request, data.get("version"))
        if "data" not in data:
            if expected is not None and expected != entity.version:
                raise StaleEntityError(f"{entity.reference} is at version {entity.version}, "
                                       f"you had {expected}; reload it and try again.")
            return _entity_response(entity)
        entity = entity_update(entity=entity, data=data["data"], expected_version=expected,
                               merge=data["mode"] == "merge")
        return _entity_response(entity)


class EntityTransitionApi(ApiView):
    class InputSerializer(StrictInput):
        to = serializers.CharField(max_length=64, help_text="The status to move to.")
        version = serializers.IntegerField(required=False, min_value=1,
                                           help_text="The version you read; same as If-Match.")

    @api_doc(request=InputSerializer, responses={200: EntitySerializer},
             errors=(400, 404, 409, 413, 422), parameters=[IF_MATCH_PARAMETER],
             summary="Move an entity to another status (only moves its type allows; 409 "
                     "otherwise)",
             examples=[OpenApiExample("Approve", request_only=True, value={"to": "approved"}),
                       OpenApiExample("Moved", response_only=True, status_codes=["200"],
                                      value={**ENTITY_EXAMPLE, "status": "approved",
                                             "version": 2})])
    def post(self, request, id):
        entity = get_or_404(entity_list(), "entity", pk=id)
        data = validate_input(EntityTransitionApi.InputSerializer, request.data)
        expected = _expected_version(request, data.get("version"))
        return _entity_response(_move(entity, data["to"], expected_version=expected))


class EntityUpsertApi(ApiView):
    class InputSerializer(StrictInput):
        data = ObjectField(help_text="The entity's whole data (replaces what is stored).")
        status = serializers.CharField(max_length=64, required=False,
                                       help_text="New entity: an initial status. Existing "
                                                 "one: moved there if it is elsewhere.")

    @api_doc(request=InputSerializer, responses={200: EntitySerializer, 201: EntitySerializer},
             errors=(400, 404, 409, 413, 422),
             summary="Create or update an entity by its reference (idempotent, for syncs)",
             examples=[OpenApiExample("Sync an order", request_only=True, value={
                 "data": {"email": "buyer@example.com", "total": 120}}),
                 OpenApiExample("Created or updated", response_only=True,
                                status_codes=["200", "201"], value=ENTITY_EXAMPLE)])
    def put(self, request, type, reference):
        """Sending the same body again writes nothing and fires no event: 200 with the
        entity as it is. A new reference is created (201, `entity.created`); a changed one
        is updated (`entity.updated`) and, when `status` differs, moved
        (`entity.status_changed`)."""
        entity_type = get_or_404(entity_types(), "entity type", key=type)
        data = validate_input(EntityUpsertApi.InputSerializer, request.data)
        wanted = data.get("status")
        for _ in range(2):  # a concurrent create of the same reference: update it instead
            entity = entity_list().filter(entity_type=entity_type, reference=reference).first()
            if entity is not None:
                break
            try:
                entity = entity_create(entity_type=entity_type, reference=reference,
                                       data=data["data"],
                                       status=_initial_status(entity_type, wanted))
            except EntityDataInvalidError as error:
                if "reference" not in (error.fields or {}) or "already exists" not in error.message:
                    raise
                continue
            return _entity_response(entity, status.HTTP_201_CREATED)
        if entity.data != data["data"]:
            entity = entity_update(entity=entity, data=data["data"])
        if wanted is not None and entity.status != wanted:
            entity = _move(entity, wanted)
        return _entity_response(entity)
