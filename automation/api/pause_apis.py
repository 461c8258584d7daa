"""Pausing and resuming processes (docs/user-guide/operating-runs.md#pause-and-resume):
one workflow definition, or every one at once. A pause holds new starts and stops running
runs at their next step; a resume continues them and releases (or discards) the held
starts."""

from drf_spectacular.utils import OpenApiExample
from rest_framework import serializers
from rest_framework.response import Response

from automation.api.auth import django_user, principal
from automation.api.base import ApiView, get_or_404, validate_input
from automation.api.schema import api_doc
from automation.models import ApiProcess
from automation.services import breaker
from automation.services.runs import process_resume, processes_resume_all


class PauseInputSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=1000,
                                   default="", help_text="Shown with the pause.")

    class Meta:
        ref_name = "PauseInput"


class ResumeInputSerializer(serializers.Serializer):
    held = serializers.ChoiceField(
        choices=["release", "discard"], default="release",
        help_text="What happens to the starts held while paused: start them now (on the "
                  "current version) or drop them.")

    class Meta:
        ref_name = "ResumeInput"


class PausedSerializer(serializers.Serializer):
    workflowDefinitionId = serializers.CharField(source="process.slug")
    paused = serializers.BooleanField()
    pausedAt = serializers.DateTimeField(source="paused_at", allow_null=True)
    reason = serializers.CharField()

    class Meta:
        ref_name = "ProcessPaused"


class ResumedSerializer(serializers.Serializer):
    released = serializers.IntegerField(help_text="Held starts started now.")
    discarded = serializers.IntegerField(help_text="Held starts dropped.")
    continued = serializers.IntegerField(help_text="Steps of running runs rung again.")

    class Meta:
        ref_name = "ProcessResumed"


class ResumedAllSerializer(ResumedSerializer):
    resumed = serializers.IntegerField(help_text="Processes resumed.")

    class Meta:
        ref_name = "ProcessesResumed"


class PausedAllSerializer(serializers.Serializer):
    paused = serializers.IntegerField(help_text="Processes paused now (not those already).")

    class Meta:
        ref_name = "ProcessesPaused"


def _who(request, reason: str) -> str:
    return reason or f"paused by {principal(request)}"


class DefinitionPauseApi(ApiView):
    @api_doc(request=PauseInputSerializer, responses={200: PausedSerializer},
             errors=(400, 404, 413, 422), summary="Pause a workflow definition", examples=[
                 OpenApiExample("Pause for a vendor's maintenance", request_only=True,
                                value={"reason": "HubSpot maintenance until 22:00"}),
                 OpenApiExample("Paused", response_only=True, value={
                     "workflowDefinitionId": "ship-order", "paused": True,
                     "pausedAt": "2025-03-01T21:00:00Z",
                     "reason": "HubSpot maintenance until 22:00"})])
    def post(self, request, id):
        process = get_or_404(ApiProcess.objects.all(), "workflow definition", slug=id)
        data = validate_input(PauseInputSerializer, request.data)
        state = breaker.process_pause(process=process, reason=_who(request, data["reason"]))
        return Response(PausedSerializer(state).data)


class DefinitionResumeApi(ApiView):
    @api_doc(request=ResumeInputSerializer, responses={200: ResumedSerializer},
             errors=(400, 404, 409, 413, 422),
             summary="Resume a paused workflow definition (409 when it is not paused)",
             examples=[OpenApiExample("Resumed", response_only=True, value={
                 "released": 3, "discarded": 0, "continued": 12})])
    def post(self, request, id):
        process = get_or_404(ApiProcess.objects.all(), "workflow definition", slug=id)
        data = validate_input(ResumeInputSerializer, request.data)
        return Response(ResumedSerializer(process_resume(
            process=process, held=data["held"], user=django_user(request))).data)


class PauseAllApi(ApiView):
    @api_doc(request=PauseInputSerializer, responses={200: PausedAllSerializer},
             errors=(400, 413, 422), summary="Pause every workflow definition", examples=[
                 OpenApiExample("All paused", response_only=True, value={"paused": 14})])
    def post(self, request):
        data = validate_input(PauseInputSerializer, request.data)
        return Response({"paused": breaker.processes_pause_all(
            reason=_who(request, data["reason"]))})


class ResumeAllApi(ApiView):
    @api_doc(request=ResumeInputSerializer, responses={200: ResumedAllSerializer},
             errors=(400, 413, 422), summary="Resume every paused workflow definition",
             examples=[OpenApiExample("All resumed", response_only=True, value={
                 "resumed": 14, "released": 3, "discarded": 0, "continued": 120})])
    def post(self, request):
        data = validate_input(ResumeInputSerializer, request.data)
        return Response(ResumedAllSerializer(processes_resume_all(
            held=data["held"], user=django_user(request))).data)
