"""What every API view shares: body size check, input validation (422), query validation
(400), lookups (404), limit/offset pagination, component names for the schema, and what
happens when a request loses its database connection (automation/api/db_loss.py)."""

import functools
import re
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound, ParseError, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils import json as drf_json
from rest_framework.views import APIView

from automation.api.auth import actor_of
from automation.api.parsers import check_content_length
from automation.api.strict import MAX_OFFSET, body_problems, page_number, query_problems
from automation.services.idempotency import MAX_KEY_LENGTH
from config.api_errors import flatten_fields
from entities.actors import acting_as
from entities.db import db_loss
from entities.services import printable, unstorable_text

IDEMPOTENCY_HEADER = "Idempotency-Key"
# Printable ASCII without spaces at either end (HTTP trims them), as the schema says.
IDEMPOTENCY_PATTERN = rf"^[!-~](?:[ -~]{{0,{MAX_KEY_LENGTH - 2}}}[!-~])?$"
IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER, {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH,
                         "pattern": IDEMPOTENCY_PATTERN},
    OpenApiParameter.HEADER, required=False,
    description="Retry-safe key: repeating a request with the same key returns the first "
                "execution instead of starting another.",
)

MAX_PAGE = 500
PAGE_PARAMETERS = [
    OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                     description=f"Page size (default 50, at most {MAX_PAGE})."),
    OpenApiParameter("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
                     description="Items to skip."),
]



class CommaSeparated(serializers.CharField):
    """A query value naming one or more of `words`, comma-separated without spaces
    (`steps,logs`). The pattern is in the OpenAPI document and the server takes exactly
    what it matches, no more (docs/rest-api.md#openapi-what-the-document-promises)."""

    def __init__(self, words, **kwargs):
        self.words = tuple(words)
        alternatives = "|".join(re.escape(word) for word in self.words)
        self.pattern = rf"^({alternatives})(,({alternatives}))*$"
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        # drf-spectacular documents a RegexValidator as the parameter's `pattern`
        from django.core.validators import RegexValidator
        self.validators.append(RegexValidator(self.pattern))

    def run_validation(self, data=serializers.empty):
        if data is not serializers.empty and (
                not isinstance(data, str) or re.fullmatch(self.pattern[1:-1], data) is None):
            raise serializers.ValidationError(f"One or more of {', '.join(self.words)}, "
                                              f"comma-separated (got {str(data)[:40]!r}).")
        value = super().run_validation(data)
        return set(value.split(",")) if isinstance(value, str) else value


class QueryInvalid(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "bad_request"

    def __init__(self, fields: dict):
        self.fields = fields
        first = next(iter(fields))
        super().__init__(f"{first}: {fields[first][0]}")


class Pagination(LimitOffsetPagination):
    """limit/offset exactly as documented: a value out of range or not a whole number is
    a 400 naming it (DRF would quietly use the default)."""

    default_limit = 50
    max_limit = MAX_PAGE

    def get_limit(self, request):
        limit = self._number(request, self.limit_query_param, low=1, high=self.max_limit)
        return self.default_limit if limit is None else limit

    def get_offset(self, request):
        return self._number(request, self.offset_query_param, low=0, high=MAX_OFFSET) or 0

    @staticmethod
    def _number(request, name: str, *, low: int, high: int | None) -> int | None:
        values = request.query_params.getlist(name)
        try:
            return page_number(values[-1] if values else None, name, low=low, high=high)
        except ValueError as exc:
            raise QueryInvalid({name: [str(exc)]}) from None


class ApiView(APIView):
    """Base of every API view. Nested InputSerializer / OutputSerializer / QuerySerializer
    get component names from the view (`CaseCreateApi` -> `CaseCreateInput`)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        base = cls.__name__.removesuffix("Api")
        for attr in ("InputSerializer", "OutputSerializer", "QuerySerializer"):
            nested = cls.__dict__.get(attr)
            if nested is not None and "Meta" not in nested.__dict__:
                nested.Meta = type("Meta", (), {"ref_name": base + attr.removesuffix("Serializer")})

    def dispatch(self, request, *args, **kwargs):
        """DRF's dispatch, with the checks and the handler run by `db_loss.run_view`: once
        more on a fresh connection if the database connection was lost before anything
        was committed, 503 if it was lost after."""
        self.args, self.kwargs = args, kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            response = db_loss.run_view(lambda: self._checked_handler(request, *args, **kwargs),
                                        what=f"{request.method} {request.path}")
        except Exception as exc:  # as in DRF: the exception handler answers
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response

    def _checked_handler(self, request, *args, **kwargs):
        """What DRF's dispatch runs in its `try`: the checks (authentication, permissions,
        throttles), then the handler of the request's method."""
        self.initial(request, *args, **kwargs)
        handler = getattr(self, request.method.lower(), None)
        if request.method.lower() not in self.http_method_names or handler is None:
            handler = self.http_method_not_allowed
        with acting_as(actor_of(request)):  # what the request writes names its caller
            return handler(request, *args, **kwargs)

    def perform_content_negotiation(self, request, force=False):
        """DRF's, answered without parsing the Accept header for what nearly every call
        sends (no Accept, or `*/*`, and no `format`) to a view with one renderer:
        DefaultContentNegotiation then picks that renderer with its own media type.
        (Parsing it was a tenth of DRF's work on the API trigger, docs/performance.md.)"""
        if (len(self.renderer_classes) == 1
                and request.META.get("HTTP_ACCEPT", "*/*") == "*/*"
                and not getattr(self, "format_kwarg", None)
                and not request.query_params.get(api_settings.URL_FORMAT_OVERRIDE)):
            renderer = self.renderer_classes[0]()
            return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)

    def initial(self, request, *args, **kwargs):
        check_content_length(request.META)
        super().initial(request, *args, **kwargs)
        check_storable_address(request, kwargs)

    def check_throttles(self, request):
        """Once per request: a view run again after a lost connection is not counted twice."""
        if getattr(request, "_throttles_checked", False):
            return
        super().check_throttles(request)
        request._throttles_checked = True


def check_storable_address(request, kwargs: dict) -> None:
    """No id in the URL holds a NUL character (nothing stored can match it: 404), and no
    query parameter does (400 naming it); PostgreSQL would refuse to even look them up."""
    if any(unstorable_text(value) for value in kwargs.values()):
        raise NotFound("No object with that id.")
    fields = {}
    for name, values in request.query_params.lists():
        problem = unstorable_text({name: None}) or unstorable_text(values)
        if problem:
            fields[printable(name)] = [problem[1]]
    if fields:
        raise QueryInvalid(fields)


def validate_input(serializer_class: type[serializers.Serializer], data: Any, *,
                   partial: bool = False, context: dict | None = None) -> dict:
    """The body, validated; a body that is not a JSON object is malformed (400), one
    whose fields are wrong is invalid (422, via the error handler)."""
    if not isinstance(data, dict):
        raise ParseError("The request body must be a JSON object.")
    defaults = None if partial else _any_json_defaults(serializer_class)
    if defaults is not None and data.keys() <= defaults.keys() and _is_json(data):
        # What the serializer returns for such a body, without building it and its
        # fields for every request (the API trigger's body; docs/performance.md, "The
        # API trigger's request path"); any other key goes to the serializer for its 422.
        return {name: data[name] if name in data else default()
                for name, default in defaults.items()}
    serializer = serializer_class(data=data, partial=partial, context=context or {})
    if mistyped := body_problems(serializer, data):
        raise ValidationError(mistyped)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _is_json(data: dict) -> bool:
    """JSONField's own check of each value (DRF's strict dumps: no NaN or infinity, which
    a number too large for a float parses to), for all of them at once."""
    try:
        drf_json.dumps(data)
    except (TypeError, ValueError):
        return False
    return True


@functools.cache
def _any_json_defaults(serializer_class: type[serializers.Serializer]) -> dict | None:
    """{field: its default} when every field of `serializer_class` is an optional
    JSONField (as `AnyJsonField` is) that takes null, with a default and nothing else to check, on a
    StrictInput that adds no checks of its own; else None. For such a serializer a
    body whose keys are all its fields, each value passing JSONField's check (it
    dumps as JSON), validates to each field's value (null stays None), or the field's
    default where it is left out: there are no validators to run."""
    if not issubclass(serializer_class, StrictInput) or any(
            getattr(serializer_class, name) is not getattr(StrictInput, name)
            for name in ("validate", "to_internal_value", "run_validation", "get_validators")):
        return None
    serializer = serializer_class()
    if serializer.validators:
        return None
    defaults = {}
    for name, field in serializer.fields.items():
        if (not _plain_json_field(field) or field.required or not field.allow_null
                or field.read_only or field.source != name or field.validators
                or field.default is serializers.empty
                or getattr(field.default, "requires_context", False)
                or hasattr(serializer_class, f"validate_{name}")):
            return None
        defaults[name] = field.default if callable(field.default) else \
            (lambda value=field.default: value)
    return defaults


def _plain_json_field(field: serializers.Field) -> bool:
    """A JSONField that reads a value as DRF's own does (a subclass may document itself
    differently, but not read differently)."""
    return (isinstance(field, serializers.JSONField) and not field.binary
            and field.encoder is None
            and all(getattr(type(field), name) is getattr(serializers.JSONField, name)
                    for name in ("get_value", "validate_empty_values", "run_validation",
                                 "to_internal_value", "run_validators", "get_default")))


class StrictInput(serializers.Serializer):
    """Takes only the fields listed: any other top-level key is a 422 naming it."""

    # Why (docs/rest-api.md#workflow-definitions): a key sent without its wrapper
    # (`total` instead of `input.total`) used to be dropped without a word. The schema
    # says so too: additionalProperties is false (schema.ApiAutoSchema).

    def validate(self, attrs):
        unknown = [key for key in self.initial_data if key not in self.fields]
        if unknown:
            known = ", ".join(self.fields)
            raise ValidationError({printable(str(key)): [
                f"Unknown field; this body takes {known}."] for key in unknown})
        return attrs


def validate_query(serializer_class: type[serializers.Serializer], request) -> dict:
    serializer = serializer_class(data=request.query_params)
    if problems := query_problems(serializer, request.query_params):
        raise QueryInvalid(problems)
    if not serializer.is_valid():
        raise QueryInvalid(flatten_fields(serializer.errors))
    return serializer.validated_data


def idempotency_header(request) -> str | None:
    raw = request.headers.get(IDEMPOTENCY_HEADER)
    if raw is None:
        return None
    if not re.match(IDEMPOTENCY_PATTERN, raw) or unstorable_text(raw):
        raise ParseError(f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII "
                         "characters, not starting or ending with a space.")
    return raw


def get_or_404(queryset, what: str, **lookup):
    try:
        return queryset.get(**lookup)
    except (queryset.model.DoesNotExist, DjangoValidationError, ValueError):
        raise not_found(what) from None


def found_or_404(obj, what: str):
    """`obj`, or the 404 get_or_404 answers when it is None."""
    if obj is None:
        raise not_found(what)
    return obj


def not_found(what: str) -> NotFound:
    return NotFound(f"No {what} with that id.")


def unprocessable(field: str, message: str) -> ValidationError:
    """A 422 naming one field of the body."""
    return ValidationError({field: [message]})


def paginate(request, view, items, serializer_class) -> Response:
    paginator = Pagination()
    page = paginator.paginate_queryset(items, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


def methods(*views: type[APIView]):
    """One URL, several operations (GET list + POST create): a view with each one's handler.

    Handlers refer to their own serializers by class name, so combining cannot mix them up.
    """
    seen: set[str] = set()
    for view in views:
        own = {m for m in view.http_method_names if m in view.__dict__}
        if own & seen:
            raise ValueError(f"{view.__name__} repeats a method: {sorted(own & seen)}")
        seen |= own
    combined = type("".join(v.__name__.removesuffix("Api") for v in views) + "Api", views, {})
    return combined.as_view()


class NotFoundApi(ApiView):
    """Anything under /api/ that matches no endpoint: 404 in the one error format
    (after authentication, like every other endpoint). Any token that may read gets the
    404, whatever the method."""

    required_scope = "read"

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        raise NotFound("No API endpoint at this address.")

    post = put = patch = delete = get
