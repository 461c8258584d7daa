"""Approvals of `human` steps (docs/user-guide/human-tasks.md): API clients decide on behalf of an
approver named in `decidedBy`; staff users decide as themselves."""

from rest_framework import serializers
from rest_framework.response import Response

from automation.api.auth import ApiClientUser
from automation.api.base import (
    PAGE_PARAMETERS,
    ApiView,
    get_or_404,
    paginate,
    unprocessable,
    validate_input,
    validate_query,
)
from automation.api.schema import AnyJsonField, api_doc, paginated
from automation.models import ApprovalRequest
from automation.services.approvals import (
    approval_decide,
    approver_matches,
    approver_user,
)


def approvals():
    return ApprovalRequest.objects.select_related("run__process", "step_run")


class ApprovalSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    executionId = serializers.UUIDField(source="run_id")
    workflowDefinitionId = serializers.CharField(source="run.process.slug")
    step = serializers.CharField(source="step_run.step_id")
    approvers = serializers.ListField(child=serializers.CharField())
    requiredApprovals = serializers.IntegerField(source="required_approvals")
    decisions = AnyJsonField()
    context = AnyJsonField()
    deadline = serializers.DateTimeField(allow_null=True)
    form = AnyJsonField(allow_null=True, help_text="JSON Schema of the data the approver enters.")
    fields = AnyJsonField(allow_null=True, help_text="Covered entity fields; null: all.")
    snapshot = AnyJsonField(help_text="The covered fields as the approver sees them.")
    version = serializers.IntegerField(
        help_text="Goes up when a covered field changes while pending; earlier decisions "
                  "then no longer count.")
    changes = AnyJsonField(help_text="What changed at the last re-issue: [{field, before, after}].")
    rejectQuorum = serializers.IntegerField(source="reject_quorum")
    remindAt = serializers.DateTimeField(source="remind_at", allow_null=True)
    escalateAt = serializers.DateTimeField(source="escalate_at", allow_null=True)
    remindedAt = serializers.DateTimeField(source="reminded_at", allow_null=True)
    escalatedAt = serializers.DateTimeField(source="escalated_at", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    decidedAt = serializers.DateTimeField(source="decided_at", allow_null=True)

    class Meta:
        ref_name = "Approval"


class ApprovalListApi(ApiView):
    class QuerySerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=ApprovalRequest.Status.choices, required=False,
                                         default=ApprovalRequest.Status.PENDING)
        assignee = serializers.CharField(
            required=False, max_length=200,
            help_text="`me` (staff: the requests you may decide), or for API clients a "
                      "username or email: the requests that person may decide.")
        workflowDefinitionId = serializers.CharField(required=False, max_length=200)

    @api_doc(parameters=[QuerySerializer, *PAGE_PARAMETERS], errors=(400, 422),
             responses={200: paginated(ApprovalSerializer, "PaginatedApprovalList")},
             summary="Approvals (API clients: all; staff: those they may decide)")
    def get(self, request):
        query = validate_query(ApprovalListApi.QuerySerializer, request)
        user, assignee = request.user, query.get("assignee")
        rows = approvals().filter(status=query["status"]).order_by("-created_at", "-id")
        if query.get("workflowDefinitionId"):
            rows = rows.filter(run__process__slug=query["workflowDefinitionId"])
        if isinstance(user, ApiClientUser):
            if assignee == "me":
                raise unprocessable("assignee", "An API client is no approver: name the person "
                                                "(username or email) instead of `me`.")
            if assignee:
                person = approver_user(assignee)
                rows = [a for a in rows if approver_matches(a, name=assignee, user=person)]
            items = rows
        else:  # staff see what they may decide, whatever `assignee` says
            items = [a for a in rows if approver_matches(a, name=user.username, user=user)]
        return paginate(request, self, items, ApprovalSerializer)


class ApprovalDecideApi(ApiView):
    class InputSerializer(serializers.Serializer):
        approved = serializers.BooleanField()
        comment = serializers.CharField(required=False, allow_blank=True, default="",
                                        max_length=2000)
        decidedBy = serializers.CharField(
            required=False, max_length=200,
            help_text="Required for API clients: the approver (username or email) they act for.")
        data = AnyJsonField(
            required=False,
            help_text="What the approver entered: validated against the step's config.form "
                      "(required when approving; 422 names `data.<field>`).")
        version = serializers.IntegerField(
            required=False, min_value=1,
            help_text="The request version the approver saw; 409 if it was re-issued since.")

    @api_doc(request=InputSerializer, responses={200: ApprovalSerializer},
             errors=(400, 404, 409, 413, 422), summary="Approve or reject")
    def post(self, request, id):
        approval = get_or_404(approvals(), "approval", pk=id)
        data = validate_input(ApprovalDecideApi.InputSerializer, request.data)
        if isinstance(request.user, ApiClientUser):
            if not data.get("decidedBy"):
                raise unprocessable("decidedBy", "Name the approver you decide for.")
            name, user = data["decidedBy"], approver_user(data["decidedBy"])
        else:
            name, user = request.user.username, request.user
        approval = approval_decide(approval=approval, approved=data["approved"],
                                   comment=data["comment"], decided_by=name, user=user,
                                   data=data.get("data"), version=data.get("version"))
        approval = get_or_404(approvals(), "approval", pk=approval.pk)
        return Response(ApprovalSerializer(approval).data)
