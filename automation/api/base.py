"""What every API view shares: body size check, input validation (422), query validation
(400), lookups (404), limit/offset pagination, component names for the schema, and what
happens when a request loses its database connection (automation/api/db_loss.py)."""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound, ParseError, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from automation.api.parsers import check_content_length
from automation.services.idempotency import MAX_KEY_LENGTH
from config.api_errors import flatten_fields
from entities.db import db_loss
from entities.services import printable, unstorable_text

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER, OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="Retry-safe key: repeating a request with the same key returns the first "
                "execution instead of starting another.",
)

PAGE_PARAMETERS = [
    OpenApiParameter("limit", OpenApiTypes.INT, description="Page size (default 50, at most 500)."),
    OpenApiParameter("offset", OpenApiTypes.INT, description="Items to skip."),
]


class QueryInvalid(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "bad_request"

    def __init__(self, fields: dict):
        self.fields = fields
        first = next(iter(fields))
        super().__init__(f"{first}: {fields[first][0]}")


class Pagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500


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
        return handler(request, *args, **kwargs)

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
    serializer = serializer_class(data=data, partial=partial, context=context or {})
    if mistyped := not_strings(serializer, data):
        raise ValidationError(mistyped)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def not_strings(serializer: serializers.Serializer, data: dict, prefix: str = "") -> dict:
    """String fields sent as something else (`"firstName": 12`): DRF would store "12";
    the API answers 422 naming the field instead (docs/rest-api.md#errors)."""
    problems: dict[str, list[str]] = {}
    for name, field in serializer.fields.items():
        if field.read_only or name not in data:
            continue
        value, path = data[name], f"{prefix}{name}"
        if isinstance(field, serializers.CharField) and value is not None \
                and not isinstance(value, str):
            problems[path] = [f"Expected a string, got {json_kind(value)}."]
        elif isinstance(field, serializers.Serializer) and isinstance(value, dict):
            problems.update(not_strings(field, value, f"{path}."))
        elif isinstance(field, serializers.ListField) and isinstance(value, list) \
                and isinstance(field.child, serializers.CharField):
            for index, item in enumerate(value):
                if item is not None and not isinstance(item, str):
                    problems[f"{path}[{index}]"] = [f"Expected a string, got {json_kind(item)}."]
    return problems


def json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "an array" if isinstance(value, list) else "an object"


def validate_query(serializer_class: type[serializers.Serializer], request) -> dict:
    serializer = serializer_class(data=request.query_params)
    if not serializer.is_valid():
        raise QueryInvalid(flatten_fields(serializer.errors))
    return serializer.validated_data


def idempotency_header(request) -> str | None:
    raw = request.headers.get(IDEMPOTENCY_HEADER)
    if raw is None:
        return None
    if not raw.strip() or len(raw) > MAX_KEY_LENGTH or unstorable_text(raw):
        raise ParseError(f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_KEY_LENGTH} characters "
                         "without NUL characters.")
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
