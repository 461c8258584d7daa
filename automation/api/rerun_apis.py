"""Run control: retry a failed execution, re-run one from any step (with a preview), and
re-run many by query as a batch (docs/user-guide/operating-runs.md)."""

from rest_framework import serializers, status
from rest_framework.response import Response

from automation.api.auth import django_user
from automation.api.base import ApiView, get_or_404, unprocessable, validate_input
from automation.api.batch_apis import BatchProgressSerializer, progress_body
from automation.api.outputs import ExecutionSerializer
from automation.api.run_apis import runs
from automation.api.schema import AnyJsonField, api_doc
from automation.models import ApiProcess, Batch, Run
from automation.services.batches import (
    batch_pause,
    batch_rerun_create,
    batch_rerun_preview,
    batch_resume,
)
from automation.services.reruns import UNSET, VERSIONS, rerun_plan, run_rerun
from automation.services.runs import run_retry

VERSION_HELP = "`pinned`: the version the run ran; `latest`: the process's current version."


def _execution(run: Run) -> dict:
    return ExecutionSerializer(get_or_404(runs(), "execution", pk=run.pk)).data


class RerunPreviewSerializer(serializers.Serializer):
    runId = serializers.UUIDField()
    fromStep = serializers.CharField()
    version = serializers.DictField(help_text="{id, number, pinned}")
    input = AnyJsonField(allow_null=True, help_text="The input the chosen step starts with.")
    inputEdited = serializers.BooleanField()
    repeatEffects = serializers.BooleanField()
    steps = serializers.ListField(child=serializers.CharField(),
                                  help_text="The steps that may run, in definition order.")
    kept = serializers.ListField(child=serializers.CharField(),
                                 help_text="Completed steps kept as they were (not run again).")
    effects = serializers.ListField(
        child=serializers.DictField(),
        help_text="Recorded external effects: {step, scope, action, key, fate, calls}; fate "
                  "is `skip if unchanged` (served from the ledger), `repeat` or `kept`.")

    class Meta:
        ref_name = "RerunPreview"


class ExecutionRerunApi(ApiView):
    class InputSerializer(serializers.Serializer):
        fromStep = serializers.CharField(max_length=100, help_text="The step to start from.")
        input = AnyJsonField(required=False, allow_null=True,
                             help_text="The chosen step's input; left out: its old input.")
        version = serializers.ChoiceField(choices=VERSIONS, default="pinned",
                                          help_text=VERSION_HELP)
        repeatEffects = serializers.BooleanField(
            default=False, help_text="Make external effects again instead of serving them "
                                     "from the idempotency ledger.")
        preview = serializers.BooleanField(default=False,
                                           help_text="Only say what the re-run would do.")

    @api_doc(request=InputSerializer,
             responses={201: ExecutionSerializer, 200: RerunPreviewSerializer},
             errors=(400, 404, 409, 413, 422),
             summary="Re-run a finished execution from any step (or preview it)")
    def post(self, request, id):
        run = get_or_404(runs(), "execution", pk=id)
        data = validate_input(ExecutionRerunApi.InputSerializer, request.data)
        edited = data["input"] if "input" in data else UNSET
        options = {"from_step": data["fromStep"], "input": edited, "version": data["version"],
                   "repeat_effects": data["repeatEffects"]}
        if data["preview"]:
            plan = rerun_plan(run=run, **options)
            return Response(RerunPreviewSerializer(plan.as_json()).data)
        new = run_rerun(run=run, user=django_user(request), **options)
        return Response(_execution(new), status=status.HTTP_201_CREATED)


class ExecutionRetryApi(ApiView):
    class InputSerializer(serializers.Serializer):
        version = serializers.ChoiceField(choices=VERSIONS, default="pinned",
                                          help_text=VERSION_HELP)

    @api_doc(request=InputSerializer, responses={201: ExecutionSerializer},
             errors=(400, 404, 409, 413, 422),
             summary="Retry a failed execution from its failed step")
    def post(self, request, id):
        run = get_or_404(runs(), "execution", pk=id)
        data = validate_input(ExecutionRetryApi.InputSerializer, request.data)
        new = run_retry(run=run, version=data["version"], user=django_user(request))
        return Response(_execution(new), status=status.HTTP_201_CREATED)


class RerunFilterSerializer(serializers.Serializer):
    process = serializers.CharField(max_length=100, help_text="Workflow definition id.")
    status = serializers.ChoiceField(choices=Run.FINISHED, default="failed")
    failedAt = serializers.CharField(required=False, max_length=100,
                                     help_text="The step the runs failed at.")
    createdFrom = serializers.DateTimeField(required=False)
    createdTo = serializers.DateTimeField(required=False)
    errorContains = serializers.CharField(required=False, max_length=500)

    class Meta:
        ref_name = "RerunFilter"


class ExecutionsRerunApi(ApiView):
    class InputSerializer(serializers.Serializer):
        filter = RerunFilterSerializer()
        fromStep = serializers.CharField(required=False, max_length=100,
                                         help_text="Left out: each run's failed step.")
        version = serializers.ChoiceField(choices=VERSIONS, default="pinned",
                                          help_text=VERSION_HELP)
        repeatEffects = serializers.BooleanField(default=False)
        ratePerSecond = serializers.FloatField(min_value=0.01, max_value=1000,
                                               help_text="At most this many re-runs a second.")
        preview = serializers.BooleanField(default=False,
                                           help_text="Only count the runs and show a sample.")
        priority = serializers.ChoiceField(
            choices=["high", "normal", "low"], required=False, default="",
            help_text="The re-runs' priority (default: each run's own).")

    class PreviewSerializer(serializers.Serializer):
        count = serializers.IntegerField()
        sample = ExecutionSerializer(many=True)

        class Meta:
            ref_name = "BulkRerunPreview"

    @api_doc(request=InputSerializer,
             responses={201: BatchProgressSerializer, 200: PreviewSerializer},
             errors=(400, 409, 413, 422),
             summary="Re-run every execution a filter matches, as a rate-limited batch")
    def post(self, request):
        data = validate_input(ExecutionsRerunApi.InputSerializer, request.data)
        spec = {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                for k, v in data["filter"].items()}
        process = ApiProcess.objects.filter(slug=spec.pop("process")).first()
        if process is None:
            raise unprocessable("filter.process", "No such workflow definition.")
        if data["preview"]:
            preview = batch_rerun_preview(process=process, filter=spec)
            return Response(ExecutionsRerunApi.PreviewSerializer(preview).data)
        batch = batch_rerun_create(process=process, filter=spec,
                                   from_step=data.get("fromStep"), version=data["version"],
                                   repeat_effects=data["repeatEffects"],
                                   rate_per_second=data["ratePerSecond"],
                                   user=django_user(request), priority=data["priority"])
        return Response(progress_body(Batch.objects.get(pk=batch.pk)),
                        status=status.HTTP_201_CREATED)


class BatchPauseApi(ApiView):
    @api_doc(request=None, responses={200: BatchProgressSerializer}, errors=(404, 409),
             summary="Pause a batch that is starting runs")
    def post(self, request, id):
        batch = get_or_404(Batch.objects.select_related("process"), "batch", pk=id)
        return Response(progress_body(batch_pause(batch=batch)))


class BatchResumeApi(ApiView):
    @api_doc(request=None, responses={200: BatchProgressSerializer}, errors=(404, 409),
             summary="Resume a paused batch from where it stopped")
    def post(self, request, id):
        batch = get_or_404(Batch.objects.select_related("process"), "batch", pk=id)
        return Response(progress_body(batch_resume(batch=batch)))
