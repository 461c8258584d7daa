"""OpenAPI building blocks shared by every view: the one error shape of docs/rest-api.md,
paginated list wrappers, and JSON fields whose shape the schema should show."""

import inspect

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers

from automation.definitions import STEP_TYPES

ERROR_DESCRIPTIONS = {
    400: "Malformed request (body is not JSON, or a query parameter cannot be read).",
    401: "Missing, invalid or expired credentials.",
    403: "Authenticated, but not allowed to do this.",
    404: "No such object.",
    409: "Conflict with the current state (e.g. the run has not finished).",
    413: "The request body is larger than the configured limit.",
    422: "The input is well-formed but not valid; `fields` names each problem.",
    429: "Too many requests for this API client; see Retry-After.",
    500: "Unexpected server error (`server_error`); the message says nothing of its cause.",
    503: "The database is unavailable or the connection to it was lost (`unavailable`); see "
         "Retry-After. The message says whether the request may have been applied.",
}
SECURED = (401, 403, 429)
EVERY = (500, 503)
WITH_BODY = (400, 413, 422)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))

    class Meta:
        ref_name = "ErrorDetail"


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()

    class Meta:
        ref_name = "Error"


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code])
            for code in sorted(set(codes))}


def api_doc(*, responses: dict, errors: tuple[int, ...] = (), public: bool = False, **kwargs):
    """extend_schema with the error responses every secured endpoint may give; an
    operation with parameters also answers 400 when one cannot be read."""
    with_parameters = (400,) if kwargs.get("parameters") else ()
    codes = (*errors, *with_parameters, *(() if public else SECURED), *EVERY)
    return extend_schema(responses={**responses, **error_responses(*codes)}, **kwargs)


_paginated: dict[str, type] = {}


def paginated(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """The list envelope of limit/offset pagination around `item`."""
    if name not in _paginated:
        meta = type("Meta", (), {"ref_name": name})
        _paginated[name] = type(name, (serializers.Serializer,), {
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item(many=True),
            "Meta": meta,
        })
    return _paginated[name]


STEP_SCHEMA = {
    "type": "object",
    "required": ["id", "type"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "type": {"type": "string", "enum": list(STEP_TYPES)},
        "function": {"oneOf": [
            {"type": "string", "description": "The name of a function."},
            {"type": "object", "description": "An inline function, stored with the "
                                              "definition version.",
             "required": ["name", "action"],
             "properties": {"name": {"type": "string"}, "action": {"type": "string"},
                            "config": {"type": "object", "additionalProperties": True},
                            "description": {"type": "string"}},
             "additionalProperties": False}]},
        "condition": {"type": "string"},
        "next": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "config": {"type": "object", "additionalProperties": True},
        "description": {"type": "string"},
    },
}
TRIGGER_SCHEMA = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string", "enum": ["status", "event", "schedule", "webhook", "manual"]},
        "config": {"type": "object", "additionalProperties": True},
        "condition": {"type": "string"},
    },
}
OBJECT_SCHEMA = {"type": "object", "additionalProperties": True}
ANY_SCHEMA: dict = {}


@extend_schema_field({"type": "array", "items": STEP_SCHEMA})
class StepsField(serializers.JSONField):
    """Steps are checked by definition_validate (paths like steps[2].next), not here."""


@extend_schema_field({"type": "array", "items": TRIGGER_SCHEMA})
class TriggersField(serializers.JSONField):
    pass


@extend_schema_field(OBJECT_SCHEMA)
class ObjectField(serializers.JSONField):
    """A JSON object; anything else is a 422 naming the field."""

    default_error_messages = {"not_object": "Expected a JSON object."}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")
        return value


@extend_schema_field(ANY_SCHEMA)
class AnyJsonField(serializers.JSONField):
    pass


class ApiAutoSchema(AutoSchema):
    """operationId from the operation's view: DefinitionListApi.get -> definitionList.
    A body that takes no other keys (base.StrictInput) has additionalProperties false."""

    def _map_basic_serializer(self, serializer, direction):
        from automation.api.base import StrictInput

        mapped = super()._map_basic_serializer(serializer, direction)
        if isinstance(serializer, StrictInput) and direction == "request":
            mapped["additionalProperties"] = False
        return mapped

    def get_operation_id(self) -> str:
        handler = getattr(self.view, self.method.lower(), None)
        owner = getattr(handler, "__qualname__", "").split(".")[0]
        if owner.endswith("Api") and owner != "ApiView":
            name = owner.removesuffix("Api")
            return name[0].lower() + name[1:]
        return super().get_operation_id()

    def get_description(self) -> str:
        handler = getattr(self.view, self.method.lower(), None)
        if handler is not None and handler.__doc__:
            return inspect.cleandoc(handler.__doc__)
        owner = getattr(handler, "__qualname__", "").split(".")[0]
        for cls in type(self.view).__mro__:
            if cls.__name__ == owner and cls.__dict__.get("__doc__"):
                return inspect.cleandoc(cls.__doc__)
        return ""


def any_value_includes_null(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: under OpenAPI 3.1 a nullable field of any JSON value comes
    out as `oneOf: [{}, {"type": "null"}]`, which null matches twice (so no null would be
    valid); `{}` alone already admits null."""

    def fix(node):
        if isinstance(node, dict):
            branches = node.get("oneOf")
            if isinstance(branches, list) and sorted(map(str, branches)) == sorted(
                    map(str, [{}, {"type": "null"}])):
                node = {k: v for k, v in node.items() if k != "oneOf"}
            return {key: fix(value) for key, value in node.items()}
        if isinstance(node, list):
            return [fix(item) for item in node]
        return node

    return fix(result)


def exact_formats(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: `uuid` and `date-time` strings get the pattern the server
    checks (automation/api/strict.py), so a client, or a fuzzer, reads the same rule the
    server applies; a format alone is advisory in JSON Schema."""
    from automation.api.strict import DATE_TIME_PATTERN, UUID_PATTERN

    patterns = {"uuid": UUID_PATTERN, "date-time": DATE_TIME_PATTERN}

    def fix(node):
        if isinstance(node, dict):
            node = {key: fix(value) for key, value in node.items()}
            if node.get("format") in patterns and "pattern" not in node:
                node["pattern"] = patterns[node["format"]]
            return node
        if isinstance(node, list):
            return [fix(item) for item in node]
        return node

    return fix(result)


def closed_request_bodies(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: request bodies list every key they take (additionalProperties
    false), as the server answers an unknown key with a 422 naming it
    (automation/api/strict.py). Free-form JSON fields (`data`, `input`, `config`) stay
    open: they are inline schemas, not components."""
    for name, schema in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and schema.get("type") == "object" \
                and "properties" in schema:
            schema.setdefault("additionalProperties", False)
    return result
