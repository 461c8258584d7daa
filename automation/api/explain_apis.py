"""Explain a proposed change to an entity, and the entity's why-timeline
(docs/user-guide/explain.md, docs/user-guide/timeline.md)."""

from rest_framework import serializers
from rest_framework.response import Response

from automation.api.base import (
    ApiView,
    CommaSeparated,
    QueryInvalid,
    get_or_404,
    validate_input,
    validate_query,
)
from automation.api.schema import AnyJsonField, ObjectField, api_doc
from automation.services.explain import explain
from entities.exceptions import EntityDataInvalidError, UnstorableTextError
from entities.selectors import entity_list
from entities.timeline import KINDS, MAX_PAGE, CursorInvalid, timeline


class ExplainSerializer(serializers.Serializer):
    entity = ObjectField(help_text="{id, type, reference, status, version} before the change.")
    data = ObjectField(help_text="The entity's data with the change applied.")
    status = ObjectField(help_text="{from, to, passesThrough}: the status the entity would "
                                   "rest in and every status it would enter on the way.")
    transition = ObjectField(allow_null=True,
                             help_text="{to, allowed, message?, reasons} when `status` was asked.")
    requirements = serializers.ListField(
        child=ObjectField(), help_text="{requirement, status, holds, message, reason}: every "
                                       "requirement of the type, after the change.")
    events = serializers.ListField(child=ObjectField(),
                                   help_text="The events the change would write (not written).")
    processes = serializers.ListField(
        child=ObjectField(),
        help_text="Every process of the entity's type: {process, name, enabled, wouldStart, "
                  "reasons: [{code: disabled | no_version | paused | no_entity_trigger | "
                  "trigger_not_reached | condition_false | condition_error, message, seen?, "
                  "trigger?}], triggers, firstSteps: [{id, type, name, wouldRun, input?}], "
                  "and when it would start, startsNow and flowControl: [{code: concurrency | "
                  "debounced | deduplicated, message, holdsStart, key?, ...}]}.")

    class Meta:
        ref_name = "Explain"


class EntityExplainApi(ApiView):
    class InputSerializer(serializers.Serializer):
        changes = ObjectField(required=False, default=dict,
                              help_text="A JSON merge patch (RFC 7386) of the entity's data.")
        status = serializers.CharField(required=False, allow_blank=True, max_length=64,
                                       help_text="A status to move the entity to.")

    @api_doc(request=InputSerializer, responses={200: ExplainSerializer},
             errors=(400, 404, 413, 422),
             summary="What a change would do: requirements, statuses and every process "
                     "it would (not) start, and why. Writes nothing, calls nothing.")
    def post(self, request, id):
        entity = get_or_404(entity_list(), "entity", pk=id)
        data = validate_input(EntityExplainApi.InputSerializer, request.data)
        try:
            answer = explain(entity=entity, changes=data["changes"],
                             status=data.get("status") or None)
        except (EntityDataInvalidError, UnstorableTextError) as exc:
            # the patch's own field names: `data.total` of the entity is `changes.total` here
            exc.fields = {("changes" + key[4:] if key.startswith("data") else key): value
                          for key, value in (exc.fields or {}).items()}
            raise
        return Response(answer)


class TimelineEntrySerializer(serializers.Serializer):
    id = serializers.CharField()
    kind = serializers.ChoiceField(choices=KINDS)
    at = serializers.DateTimeField()
    actor = ObjectField(allow_null=True, help_text="{type: user | client | process, name}")
    summary = serializers.CharField()
    details = AnyJsonField()

    class Meta:
        ref_name = "TimelineEntry"


class TimelineSerializer(serializers.Serializer):
    results = TimelineEntrySerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="The cursor of the next page.")

    class Meta:
        ref_name = "Timeline"


class EntityTimelineApi(ApiView):
    class QuerySerializer(serializers.Serializer):
        kind = CommaSeparated(KINDS, required=False,
                              help_text=f"Comma-separated kinds: {', '.join(KINDS)}.")
        cursor = serializers.CharField(required=False, help_text="`next` of the previous page.")
        limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE,
                                         default=50)

    @api_doc(parameters=[QuerySerializer], responses={200: TimelineSerializer},
             errors=(400, 404),
             summary="The entity's why-timeline, oldest first, with cursor pagination")
    def get(self, request, id):
        entity = get_or_404(entity_list(), "entity", pk=id)
        query = validate_query(EntityTimelineApi.QuerySerializer, request)
        kinds = query.get("kind") or None
        try:
            entries, cursor = timeline(entity, kinds=kinds, cursor=query.get("cursor"),
                                       limit=query["limit"])
        except CursorInvalid as exc:
            raise QueryInvalid({"cursor": [str(exc)]}) from None
        return Response({"results": [entry.as_json() for entry in entries], "next": cursor})
