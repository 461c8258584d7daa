"""POST /api/events: a system publishes its own event; matching processes start runs."""

from drf_spectacular.utils import OpenApiExample
from rest_framework import serializers, status
from rest_framework.response import Response

from automation.api.base import ApiView, StrictInput, validate_input
from automation.api.schema import ObjectField, api_doc
from automation.definitions.flow import MAX_WINDOW_MS
from automation.models import Run
from automation.services.dedupe import event_publish_once
from entities.db import db_loss
from entities.models import EntityEvent
from entities.outbox import event_publish


class SkippedSerializer(serializers.Serializer):
    process = serializers.CharField(help_text="Workflow definition id.")
    trigger = serializers.IntegerField(help_text="The trigger that skipped.")
    reason = serializers.CharField(help_text="Its condition was false, or could not be "
                                             "evaluated (and why).")

    class Meta:
        ref_name = "SkippedTrigger"


class EventPublishApi(ApiView):
    class InputSerializer(StrictInput):
        type = serializers.RegexField(r"^[A-Za-z0-9_.:-]+$", max_length=100,
                                      help_text="e.g. purchase.created")
        timestamp = serializers.DateTimeField(required=False, allow_null=True, default=None)
        source = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        data = ObjectField(required=False, default=dict)
        dedupeKey = serializers.CharField(  # noqa: N815 - the API's name
            max_length=300, required=False, allow_null=True, default=None,
            help_text="Publish once per key: a repeat within dedupeWindowMs publishes "
                      "nothing and is answered with the first event and its executions "
                      "(`duplicate: true`).")
        dedupeWindowMs = serializers.IntegerField(  # noqa: N815
            min_value=1, max_value=MAX_WINDOW_MS, required=False, allow_null=True, default=None,
            help_text="How long a dedupeKey is remembered (default 24 hours).")

        def validate_type(self, value: str) -> str:
            if value.startswith("entity."):
                raise serializers.ValidationError("entity.* events are written by entity saves.")
            return value

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        type = serializers.CharField()
        executions = serializers.ListField(child=serializers.UUIDField(),
                                           help_text="Runs this event started.")
        skipped = SkippedSerializer(many=True, help_text="Triggers that matched the event "
                                                         "but whose condition did not hold.")
        duplicate = serializers.BooleanField(
            help_text="True when dedupeKey was seen within its window: this answer is the "
                      "first event's, and nothing was published (also the header "
                      "Entityflow-Duplicate: true).")

    @api_doc(request=InputSerializer, responses={202: OutputSerializer}, errors=(400, 413, 422),
             summary="Publish an event; processes with a matching event trigger start",
             examples=[OpenApiExample("Publish", request_only=True, value={
                 "type": "purchase.created", "data": {"total": 120}}),
                 OpenApiExample("Started one, skipped one", response_only=True,
                                status_codes=["202"], value={
                                    "id": 812, "type": "purchase.created",
                                    "executions": ["5f0c2b8e-9d1a-4c3e-8b7f-2a6d4e1c9b03"],
                                    "skipped": [{"process": "big-purchases", "trigger": 14,
                                                 "reason": "The trigger's condition is false."}],
                                    "duplicate": False}),
                 OpenApiExample("Publish once per key", request_only=True, value={
                     "type": "purchase.created", "data": {"total": 120},
                     "dedupeKey": "purchase-7731", "dedupeWindowMs": 3600000}),
                 OpenApiExample("A duplicate, answered with the first event", response_only=True,
                                status_codes=["202"], value={
                                    "id": 812, "type": "purchase.created",
                                    "executions": ["5f0c2b8e-9d1a-4c3e-8b7f-2a6d4e1c9b03"],
                                    "skipped": [], "duplicate": True})])
    def post(self, request):
        data = validate_input(EventPublishApi.InputSerializer, request.data)
        publish = {"type": data["type"], "data": data["data"], "source": data["source"],
                   "occurred_at": data["timestamp"]}
        duplicate = False
        if data["dedupeKey"] is not None:
            event, duplicate = event_publish_once(
                dedupe_key=data["dedupeKey"], window_ms=data["dedupeWindowMs"], **publish)
        else:
            event = event_publish(**publish)
        # The event is committed: from here on only reads, repeated if the connection is
        # lost (running the view again would publish the event twice).
        executions, skipped = db_loss.read(lambda: (
            list(Run.objects.filter(event=event).order_by("created_at")
                 .values_list("pk", flat=True)),
            EntityEvent.objects.filter(pk=event.pk).values_list("skipped", flat=True).first()))
        body = {"id": event.pk, "type": event.type, "executions": executions,
                "skipped": skipped or [], "duplicate": duplicate}
        response = Response(EventPublishApi.OutputSerializer(body).data,
                            status=status.HTTP_202_ACCEPTED)
        if duplicate:
            response["Entityflow-Duplicate"] = "true"
        return response
