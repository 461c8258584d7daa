"""Named functions: an action plus its config (and connection), without code."""

from rest_framework import serializers, status
from rest_framework.response import Response

from automation.api.base import (
    PAGE_PARAMETERS,
    ApiView,
    get_or_404,
    paginate,
    unprocessable,
    validate_input,
    validate_query,
)
from automation.api.schema import ObjectField, api_doc, paginated
from automation.api.services import function_delete, function_save
from automation.exceptions import RunStateError
from automation.models import Connection, Function


def functions():
    return Function.objects.select_related("connection")


class FunctionSerializer(serializers.Serializer):
    name = serializers.CharField()
    action = serializers.CharField()
    config = ObjectField()
    connection = serializers.CharField(source="connection.name", default=None, allow_null=True)
    paramsSchema = ObjectField(source="params_schema", allow_null=True)
    description = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        ref_name = "Function"


class FunctionInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    action = serializers.CharField(max_length=100, help_text="e.g. transform, http.request")
    config = ObjectField(required=False, default=dict)
    connection = serializers.CharField(max_length=100, required=False, allow_null=True,
                                       default=None, help_text="A connection's name.")
    paramsSchema = ObjectField(required=False, allow_null=True, default=None,
                               help_text="JSON Schema of the arguments an agent passes when "
                                         "it calls this function as a tool.")
    description = serializers.CharField(required=False, allow_blank=True, default="")
    # Output-only keys, accepted and ignored so that a body read with GET can be sent back.
    createdAt = serializers.DateTimeField(required=False, help_text="Ignored (output only).")
    updatedAt = serializers.DateTimeField(required=False, help_text="Ignored (output only).")

    class Meta:
        ref_name = "FunctionInput"


def connection_from_body(name: str | None) -> Connection | None:
    if not name:
        return None
    connection = Connection.objects.filter(name=name).first()
    if connection is None:
        raise unprocessable("connection", f"No connection '{name}'.")
    return connection


def save(data: dict, function: Function | None = None) -> Function:
    return function_save(name=data["name"], action=data["action"], config=data["config"],
                         connection=connection_from_body(data.get("connection")),
                         description=data.get("description") or "", function=function,
                         params_schema=data.get("paramsSchema"))


class FunctionListApi(ApiView):
    class QuerySerializer(serializers.Serializer):
        action = serializers.CharField(required=False)

    @api_doc(parameters=[QuerySerializer, *PAGE_PARAMETERS], errors=(400,),
             responses={200: paginated(FunctionSerializer, "PaginatedFunctionList")},
             summary="List functions configured without code")
    def get(self, request):
        query = validate_query(FunctionListApi.QuerySerializer, request)
        qs = functions().filter(**({"action": query["action"]} if query.get("action") else {}))
        return paginate(request, self, qs.order_by("name"), FunctionSerializer)


class FunctionCreateApi(ApiView):
    @api_doc(request=FunctionInputSerializer, responses={201: FunctionSerializer},
             errors=(400, 409, 413, 422), summary="Create a function")
    def post(self, request):
        data = validate_input(FunctionInputSerializer, request.data)
        if Function.objects.filter(name=data["name"]).exists():
            raise RunStateError(
                f"A function '{data['name']}' already exists; use PUT to change it.")
        return Response(FunctionSerializer(save(data)).data, status=status.HTTP_201_CREATED)


class FunctionDetailApi(ApiView):
    @api_doc(responses={200: FunctionSerializer}, errors=(404,), summary="Get a function")
    def get(self, request, name):
        return Response(FunctionSerializer(get_or_404(functions(), "function", name=name)).data)


class FunctionReplaceApi(ApiView):
    class InputSerializer(FunctionInputSerializer):
        name = serializers.CharField(max_length=100, required=False,
                                     help_text="Optional; must equal the name in the URL.")

    @api_doc(request=InputSerializer, responses={200: FunctionSerializer},
             errors=(400, 404, 413, 422),
             summary="Replace a function's action, config and connection")
    def put(self, request, name):
        function = get_or_404(functions(), "function", name=name)
        body = {"name": name, **request.data} if isinstance(request.data, dict) else request.data
        data = validate_input(FunctionReplaceApi.InputSerializer, body)
        if data["name"] != name:
            raise unprocessable("name", "A function cannot be renamed; create a new one.")
        return Response(FunctionSerializer(save(data, function)).data)


class FunctionDeleteApi(ApiView):
    @api_doc(responses={204: None}, errors=(404, 409),
             summary="Delete a function (409 while an enabled process calls it)")
    def delete(self, request, name):
        function_delete(function=get_or_404(functions(), "function", name=name))
        return Response(status=status.HTTP_204_NO_CONTENT)
