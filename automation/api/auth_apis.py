"""POST /api/auth/authorize and /api/auth/refresh: the only endpoints without a token."""

from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from automation.api.base import ApiView, validate_input
from automation.api.schema import api_doc
from automation.api.throttles import AuthEndpointThrottle
from automation.services.api_auth import tokens_authorize, tokens_refresh


class TokensSerializer(serializers.Serializer):
    accessToken = serializers.CharField()
    refreshToken = serializers.CharField()
    expiresIn = serializers.IntegerField(help_text="Seconds until the access token expires.")

    class Meta:
        ref_name = "Tokens"


class PublicApiView(ApiView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [AuthEndpointThrottle]


class AuthAuthorizeApi(PublicApiView):
    class InputSerializer(serializers.Serializer):
        key = serializers.CharField(max_length=200)
        secret = serializers.CharField(max_length=500, trim_whitespace=False)

    @api_doc(request=InputSerializer, responses={200: TokensSerializer},
             errors=(400, 401, 413, 422, 429), public=True, auth=[],
             summary="Trade an API client's key and secret for tokens")
    def post(self, request):
        data = validate_input(AuthAuthorizeApi.InputSerializer, request.data)
        return Response(tokens_authorize(key=data["key"], secret=data["secret"]))


class AuthRefreshApi(PublicApiView):
    class InputSerializer(serializers.Serializer):
        refreshToken = serializers.CharField(max_length=500)

    @api_doc(request=InputSerializer, responses={200: TokensSerializer},
             errors=(400, 401, 413, 422, 429), public=True, auth=[],
             summary="Trade a refresh token for a new token pair (the old one is spent)")
    def post(self, request):
        data = validate_input(AuthRefreshApi.InputSerializer, request.data)
        return Response(tokens_refresh(refresh_token=data["refreshToken"]))
