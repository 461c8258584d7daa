"""The single DRF exception handler: every API error has the shape of docs/rest-api.md,
{"error": {"code", "message", "fields"}}.

400 is for what cannot be read (malformed JSON, a body that is not an object, a bad
query parameter); 422 for input that was read but is not valid (serializer errors,
invalid definitions); 413 for bodies over the limit, including Django's own
RequestDataTooBig; 503 `unavailable` (with Retry-After) for a lost database connection
(entities/db/db_loss.py). Anything else is a 500 `server_error` with a generic
message: the exception is logged with its traceback, never shown."""

from django.core import signals
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.log import log_response
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from automation.exceptions import AutomationError
from entities.exceptions import EntitiesError
from integrations.exceptions import ConnectorError

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
         415: "unsupported_media_type", 422: "invalid", 429: "rate_limited",
         500: "server_error", 503: "unavailable"}
SERVER_ERROR_MESSAGE = "An unexpected error occurred on the server; it has been logged."


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def flatten_fields(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail -> {"steps[2].next": ["..."]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):  # a ListField's errors are keyed by item index
                path = f"{prefix}[{key}]"
            else:
                name = key if key != "non_field_errors" else ""
                path = f"{prefix}.{name}" if prefix and name else (prefix or name)
            out.update(flatten_fields(value, path))
    elif isinstance(detail, list) and detail and all(isinstance(v, str) for v in detail):
        out.setdefault(prefix or "non_field_errors", []).extend(str(v) for v in detail)
    elif isinstance(detail, list):
        for i, value in enumerate(detail):
            out.update(flatten_fields(value, f"{prefix}[{i}]"))
    else:
        out.setdefault(prefix or "non_field_errors", []).append(str(detail))
    return out


WWW_AUTHENTICATE = 'Bearer realm="entityflow"'


def api_exception_handler(exc, context):
    response = _handle(exc, context)
    if response is not None and response.status_code == 401 and "WWW-Authenticate" not in response:
        response["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response


def _handle(exc, context):
    if isinstance(exc, (EntitiesError, AutomationError, ConnectorError)):
        status = getattr(exc, "http_status", 400)
        message = getattr(exc, "message", None) or str(exc)
        return Response(error_body(exc.code, message, getattr(exc, "fields", None)), status=status)
    if isinstance(exc, RequestDataTooBig):
        body = error_body("payload_too_large", "The request body is too large.")
        return Response(body, status=413)
    if isinstance(exc, DjangoValidationError):
        fields = (exc.message_dict if hasattr(exc, "error_dict")
                  else {"non_field_errors": exc.messages})
        first = next(iter(fields.values()))[0] if fields else "Invalid input."
        return Response(error_body("invalid", first, fields), status=422)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return server_error(exc, context)
    status = response.status_code
    if isinstance(exc, drf.ValidationError):
        fields = flatten_fields(exc.detail)
        first_key = next(iter(fields), "")
        message = f"{first_key}: {fields[first_key][0]}" if first_key else "Invalid input."
        body = error_body("invalid", message, fields)
        response.status_code = 422
    elif getattr(exc, "fields", None):
        body = error_body(CODES.get(status, "error"), str(exc.detail), exc.fields)
    else:
        detail = exc.detail if isinstance(exc, drf.APIException) else str(exc)
        code = getattr(exc, "error_code", None) or CODES.get(status, "error")
        body = error_body(code, str(detail))
    response.data = body
    return response


def server_error(exc: Exception, context: dict) -> Response:
    """An exception no other branch answers: a bug, or an outage nothing else caught.

    Logged as Django logs a 500 (`django.request`, with the traceback) and announced on
    `got_request_exception` as Django would, but answered in the one error format with a
    message that says nothing of the exception (its text may hold data or secrets)."""
    set_rollback()
    response = Response(error_body("server_error", SERVER_ERROR_MESSAGE), status=500)
    request = getattr(context.get("request"), "_request", None)
    signals.got_request_exception.send(sender=None, request=request)
    log_response("Internal Server Error: %s", getattr(request, "path", "?"),
                 response=response, request=request, exception=exc)
    return response
