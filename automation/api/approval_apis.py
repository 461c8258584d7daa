"""Approvals of `human` steps: API clients decide on behalf of an approver named in
`decidedBy`; staff users decide as themselves."""

from django.contrib.auth import get_user_model
from django.db.models import Q
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
from automation.services.approvals import approval_decide, approvals_for_user, approver_matches


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
    createdAt = serializers.DateTimeField(source="created_at")
    decidedAt = serializers.DateTimeField(source="decided_at", allow_null=True)

    class Meta:
        ref_name = "Approval"


class ApprovalListApi(ApiView):
    class QuerySerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=ApprovalRequest.Status.choices, required=False,
                                         default=ApprovalRequest.Status.PENDING)

    @api_doc(parameters=[QuerySerializer, *PAGE_PARAMETERS], errors=(400,),
             responses={200: paginated(ApprovalSerializer, "PaginatedApprovalList")},
             summary="Approvals (API clients: all; staff: those they may decide)")
    def get(self, request):
        query = validate_query(ApprovalListApi.QuerySerializer, request)
        user = request.user
        if isinstance(user, ApiClientUser):
            items = approvals().filter(status=query["status"]).order_by("-created_at", "id")
        elif query["status"] == ApprovalRequest.Status.PENDING:
            items = approvals_for_user(user)
        else:
            items = [a for a in approvals().filter(status=query["status"]).order_by("-created_at")
                     if approver_matches(a, name=user.username, user=user)]
        return paginate(request, self, items, ApprovalSerializer)


def approver_user(name: str):
    """The Django user a `decidedBy` name belongs to, if any (so group entries match)."""
    return get_user_model().objects.filter(Q(username__iexact=name) | Q(email__iexact=name)).first()


class ApprovalDecideApi(ApiView):
    class InputSerializer(serializers.Serializer):
        approved = serializers.BooleanField()
        comment = serializers.CharField(required=False, allow_blank=True, default="",
                                        max_length=2000)
        decidedBy = serializers.CharField(
            required=False, max_length=200,
            help_text="Required for API clients: the approver (username or email) they act for.")

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
                                   comment=data["comment"], decided_by=name, user=user)
        approval = get_or_404(approvals(), "approval", pk=approval.pk)
        return Response(ApprovalSerializer(approval).data)
