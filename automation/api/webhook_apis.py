"""Outbound webhook subscriptions. The secret signs deliveries and is never returned."""

from rest_framework import serializers, status
from rest_framework.response import Response

from automation.api.auth import ApiClientUser
from automation.api.base import PAGE_PARAMETERS, ApiView, get_or_404, paginate, validate_input
from automation.api.schema import api_doc, paginated
from automation.api.services import WEBHOOK_EVENTS, webhook_subscription_delete
from automation.models import WebhookSubscription
from automation.services.webhooks import webhook_subscription_create


def owner_of(request) -> str:
    user = request.user
    return user.api_client.key if isinstance(user, ApiClientUser) else user.username


def subscriptions(request):
    """Active subscriptions the caller may see: its own (staff see all)."""
    qs = WebhookSubscription.objects.filter(active=True)
    return qs if request.user.is_staff else qs.filter(owner=owner_of(request))


class WebhookSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField()
    events = serializers.ListField(child=serializers.CharField())
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        ref_name = "Webhook"


class WebhookListApi(ApiView):
    @api_doc(parameters=PAGE_PARAMETERS,
             responses={200: paginated(WebhookSerializer, "PaginatedWebhookList")},
             summary="List your webhook subscriptions")
    def get(self, request):
        return paginate(request, self, subscriptions(request).order_by("-created_at", "id"),
                        WebhookSerializer)


class WebhookCreateApi(ApiView):
    class InputSerializer(serializers.Serializer):
        url = serializers.URLField(max_length=500)
        events = serializers.ListField(
            child=serializers.ChoiceField(choices=WEBHOOK_EVENTS), min_length=1, max_length=10)
        # Not marked write-only: this serializer only ever reads (the output is
        # WebhookSerializer, which has no secret).
        secret = serializers.CharField(min_length=8, max_length=200, trim_whitespace=False,
                                       help_text="Signs each delivery (X-Entityflow-Signature); "
                                                 "never returned.")

    @api_doc(request=InputSerializer, responses={201: WebhookSerializer}, errors=(400, 413, 422),
             summary="Subscribe a URL to events")
    def post(self, request):
        data = validate_input(WebhookCreateApi.InputSerializer, request.data)
        subscription = webhook_subscription_create(
            url=data["url"], events=sorted(set(data["events"])), secret=data["secret"],
            owner=owner_of(request))
        return Response(WebhookSerializer(subscription).data, status=status.HTTP_201_CREATED)


class WebhookDeleteApi(ApiView):
    @api_doc(responses={204: None}, errors=(404,), summary="Stop a webhook subscription")
    def delete(self, request, id):
        webhook_subscription_delete(
            subscription=get_or_404(subscriptions(request), "webhook subscription", pk=id))
        return Response(status=status.HTTP_204_NO_CONTENT)
