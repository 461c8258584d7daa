"""Values read exactly as /api/schema/ documents them (docs/rest-api.md#openapi).

DRF is lenient where the schema is not: it stores `12` sent for a string as "12",
takes "5" for an integer and "yes" for a boolean, reads a UUID without dashes, a date
without a time, and treats an empty query parameter as absent. Each of those would be a
request the document calls invalid that the server accepts, so before a serializer runs,
the raw values are checked against the documented types and formats: 422 naming the
field for a body, 400 for a query parameter. The patterns here are also written into
the document (schema.exact_formats), so the two cannot drift apart."""

import re
from typing import Any

from rest_framework import serializers

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# RFC 3339 date-time with seconds and an offset (what OpenAPI's `date-time` means), in
# the years 1000 to 8999: far enough from Python's year 1 and 9999 that no offset moves a
# value out of what a datetime can hold.
DATE_TIME_PATTERN = (r"^[1-8]\d{3}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:"
                     r"[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$")
INTEGER_PATTERN = r"^-?\d{1,18}$"
_UUID, _DATE_TIME, _INTEGER = map(re.compile, (UUID_PATTERN, DATE_TIME_PATTERN, INTEGER_PATTERN))


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _body_value_problem(field: serializers.Field, value: Any) -> str | None:
    if value is None:
        return None  # allow_null is the serializer's to judge
    if isinstance(field, serializers.UUIDField):
        if not isinstance(value, str) or not _UUID.match(value):
            return "Expected a UUID (8-4-4-4-12 hexadecimal digits)."
    elif isinstance(field, serializers.DateTimeField):
        if not isinstance(value, str) or not _DATE_TIME.match(value):
            return "Expected an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z."
    elif isinstance(field, serializers.CharField):
        if not isinstance(value, str):
            return f"Expected a string, got {json_kind(value)}."
    elif isinstance(field, serializers.BooleanField):
        if not isinstance(value, bool):
            return f"Expected true or false, got {json_kind(value)}."
    elif isinstance(field, serializers.IntegerField):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"Expected a whole number, got {json_kind(value)}."
    elif isinstance(field, (serializers.FloatField, serializers.DecimalField)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"Expected a number, got {json_kind(value)}."
    elif isinstance(field, serializers.ChoiceField):
        if not isinstance(value, str):
            return f"Expected a string, got {json_kind(value)}."
    return None


def body_problems(serializer: serializers.Serializer, data: dict, prefix: str = "") -> dict:
    """{field path: [message]} for keys the schema does not list (request bodies are
    documented with additionalProperties false) and raw values of another type or
    format than it documents."""
    problems: dict[str, list[str]] = {}
    known = [name for name, field in serializer.fields.items() if not field.read_only]
    for key in data:
        if key not in known:
            problems[f"{prefix}{key}"] = [f"Unknown field; this object takes "
                                          f"{', '.join(known) or 'no fields'}."]
    for name, field in serializer.fields.items():
        if field.read_only or name not in data:
            continue
        value, path = data[name], f"{prefix}{name}"
        if isinstance(field, serializers.Serializer):
            if isinstance(value, dict):
                problems.update(body_problems(field, value, f"{path}."))
        elif isinstance(field, serializers.ListField):
            if isinstance(value, list):
                for index, item in enumerate(value):
                    if message := _body_value_problem(field.child, item):
                        problems[f"{path}[{index}]"] = [message]
        elif message := _body_value_problem(field, value):
            problems[path] = [message]
    return problems


def query_problems(serializer: serializers.Serializer, query) -> dict:
    """The same for query parameters, which are always text: no blank values where the
    schema asks for at least one character, booleans only `true` or `false`."""
    problems: dict[str, list[str]] = {}
    for name, values in query.lists():
        field = serializer.fields.get(name)
        if field is None:
            continue
        for value in values:
            message = None
            if value == "" and not getattr(field, "allow_blank", False):
                message = "May not be blank."
            elif isinstance(field, serializers.BooleanField) and value not in ("true", "false"):
                message = "Expected true or false."
            elif isinstance(field, serializers.UUIDField) and not _UUID.match(value):
                message = "Expected a UUID (8-4-4-4-12 hexadecimal digits)."
            elif isinstance(field, serializers.DateTimeField) and not _DATE_TIME.match(value):
                message = "Expected an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z."
            elif isinstance(field, serializers.IntegerField) and not _INTEGER.match(value):
                message = "Expected a whole number."
            if message:
                problems[name] = [message]
                break
    return problems


MAX_OFFSET = 2**31 - 1


def page_number(value: str | None, name: str, *, low: int, high: int | None) -> int | None:
    """limit/offset as documented: a whole number in [low, high]; None when absent."""
    if value is None:
        return None
    if not _INTEGER.match(value) or int(value) < low or (high is not None and int(value) > high):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ValueError(f"{name} must be a whole number {span}.")
    return int(value)
