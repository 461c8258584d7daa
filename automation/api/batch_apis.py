"""Batches: one process over every entity a filter matches."""

from rest_framework import serializers, status
from rest_framework.response import Response

from automation.api.auth import django_user
from automation.api.base import ApiView, get_or_404, unprocessable, validate_input
from automation.api.schema import api_doc
from automation.models import ApiProcess, Batch
from automation.services.batches import (
    batch_cancel,
    batch_create,
    batch_progress,
    batch_retry_failed,
)
from entities.models import EntityType


def batches():
    return Batch.objects.select_related("process", "entity_type")


class BatchFilterSerializer(serializers.Serializer):
    """The filters of entities.selectors.entity_filter."""

    status = serializers.CharField(required=False)
    search = serializers.CharField(required=False)
    createdFrom = serializers.DateTimeField(required=False)
    createdTo = serializers.DateTimeField(required=False)
    updatedFrom = serializers.DateTimeField(required=False)
    updatedTo = serializers.DateTimeField(required=False)
    hasLink = serializers.CharField(required=False,
                                    help_text="Has an external link of this provider.")
    lacksLink = serializers.CharField(required=False, help_text="Has none of this provider.")

    class Meta:
        ref_name = "BatchFilter"


class BatchProgressSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    total = serializers.IntegerField()
    queued = serializers.IntegerField()
    running = serializers.IntegerField()
    done = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    percent = serializers.FloatField()
    ratePerSecond = serializers.FloatField()
    etaSeconds = serializers.IntegerField(allow_null=True)

    class Meta:
        ref_name = "BatchProgress"


def progress_body(batch: Batch, **extra) -> dict:
    return {**BatchProgressSerializer(batch_progress(batch)).data, **extra}


class BatchCreateApi(ApiView):
    class InputSerializer(serializers.Serializer):
        entityType = serializers.CharField(max_length=64)
        filter = BatchFilterSerializer(required=False, default=dict)
        process = serializers.CharField(max_length=100, help_text="Workflow definition id.")
        ratePerSecond = serializers.FloatField(
            required=False, min_value=0.01, max_value=10000,
            help_text="At most this many runs started a second (default: as fast as it can).")
        priority = serializers.ChoiceField(
            choices=["high", "normal", "low"], required=False, default="",
            help_text="The priority of the batch's runs (default: the process's).")

    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        total = serializers.IntegerField()
        status = serializers.CharField()
        priority = serializers.CharField(help_text="blank: the process's")

    @api_doc(request=InputSerializer, responses={201: OutputSerializer},
             errors=(400, 409, 413, 422), summary="Start a batch")
    def post(self, request):
        data = validate_input(BatchCreateApi.InputSerializer, request.data)
        entity_type = EntityType.objects.filter(key=data["entityType"]).first()
        if entity_type is None:
            raise unprocessable("entityType", f"No entity type '{data['entityType']}'.")
        process = ApiProcess.objects.filter(slug=data["process"]).first()
        if process is None:
            raise unprocessable("process", f"No workflow definition '{data['process']}'.")
        if process.entity_type_id not in (None, entity_type.pk):
            raise unprocessable("process", f"'{process.slug}' is for another entity type.")
        spec = {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                for k, v in data["filter"].items()}
        batch = batch_create(entity_type=entity_type, process=process, filter=spec,
                             user=django_user(request),
                             rate_per_second=data.get("ratePerSecond"),
                             priority=data.get("priority") or "")
        batch.refresh_from_db()
        return Response(BatchCreateApi.OutputSerializer(batch).data, status=status.HTTP_201_CREATED)


class BatchDetailApi(ApiView):
    @api_doc(responses={200: BatchProgressSerializer}, errors=(404,), summary="Batch progress")
    def get(self, request, id):
        return Response(progress_body(get_or_404(batches(), "batch", pk=id)))


class BatchCancelApi(ApiView):
    @api_doc(request=None, responses={200: BatchProgressSerializer}, errors=(404, 409),
             summary="Cancel a batch and its unfinished runs (409 once it has finished)")
    def post(self, request, id):
        batch = batch_cancel(batch=get_or_404(batches(), "batch", pk=id))
        return Response(progress_body(batch))


class BatchRetryFailedApi(ApiView):
    class OutputSerializer(BatchProgressSerializer):
        retried = serializers.IntegerField(help_text="Failed runs retried from their failed step.")

    @api_doc(request=None, responses={200: OutputSerializer}, errors=(404,),
             summary="Retry the failed runs of a batch")
    def post(self, request, id):
        batch = get_or_404(batches(), "batch", pk=id)
        retried = batch_retry_failed(batch=batch)
        batch.refresh_from_db()
        return Response(progress_body(batch, retried=retried))
