"""POST /api/events: a system publishes its own event; matching processes start runs."""

from drf_spectacular.utils import OpenApiExample
from rest_framework import serializers, status
from rest_framework.response import Response

from automation.api.base import ApiView, StrictInput, validate_input
from automation.api.schema import ObjectField, api_doc
from automation.models import Run
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

    @api_doc(request=InputSerializer, responses={202: OutputSerializer}, errors=(400, 413, 422),
             summary="Publish an event; processes with a matching event trigger start",
             examples=[OpenApiExample("Publish", request_only=True, value={
                 "type": "purchase.created", "data": {"total": 120}}),
                 OpenApiExample("Started one, skipped one", response_only=True,
                                status_codes=["202"], value={
                                    "id": 812, "type": "purchase.created",
                                    "executions": ["5f0c2b8e-9d1a-4c3e-8b7f-2a6d4e1c9b03"],
                                    "skipped": [{"process": "big-purchases", "trigger": 14,
                                                 "reason": "The trigger's condition is false."}]})])
    def post(self, request):
        data = validate_input(EventPublishApi.InputSerializer, request.data)
        event = event_publish(type=data["type"], data=data["data"], source=data["source"],
                              occurred_at=data["timestamp"])
        # The event is committed: from here on only reads, repeated if the connection is
        # lost (running the view again would publish the event twice).
        executions, skipped = db_loss.read(lambda: (
            list(Run.objects.filter(event=event).order_by("created_at")
                 .values_list("pk", flat=True)),
            EntityEvent.objects.filter(pk=event.pk).values_list("skipped", flat=True).first()))
        body = {"id": event.pk, "type": event.type, "executions": executions,
                "skipped": skipped or []}
        return Response(EventPublishApi.OutputSerializer(body).data,
                        status=status.HTTP_202_ACCEPTED)
