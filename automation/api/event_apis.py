"""POST /api/events: a system publishes its own event; matching processes start runs."""

from rest_framework import serializers, status
from rest_framework.response import Response

from automation.api.base import ApiView, validate_input
from automation.api.schema import ObjectField, api_doc
from automation.models import Run
from entities.db import db_loss
from entities.outbox import event_publish


class EventPublishApi(ApiView):
    class InputSerializer(serializers.Serializer):
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

    @api_doc(request=InputSerializer, responses={202: OutputSerializer}, errors=(400, 413, 422),
             summary="Publish an event; processes with a matching event trigger start")
    def post(self, request):
        data = validate_input(EventPublishApi.InputSerializer, request.data)
        event = event_publish(type=data["type"], data=data["data"], source=data["source"],
                              occurred_at=data["timestamp"])
        # The event is committed: from here on only reads, repeated if the connection is
        # lost (running the view again would publish the event twice).
        executions = db_loss.read(lambda: list(
            Run.objects.filter(event=event).order_by("created_at").values_list("pk", flat=True)))
        body = {"id": event.pk, "type": event.type, "executions": executions}
        return Response(EventPublishApi.OutputSerializer(body).data,
                        status=status.HTTP_202_ACCEPTED)
