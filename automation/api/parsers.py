"""Request bodies: JSON only, and never more than the configured size.

The size is checked twice: from Content-Length before anything is read (so a huge
upload is refused without reading it), and while parsing (a body without an honest
Content-Length is read at most one byte past the limit).

Then what no database can hold is refused before any view sees it: nesting deeper than
MAX_JSON_DEPTH (400; the limit inbound webhooks share, automation.services.payloads),
and NUL characters or lone UTF-16 surrogates in any string or key (422 naming the field;
PostgreSQL's JSON and text types refuse them, SQLite does not, and both databases must
answer alike)."""

import json
import re
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError, ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.utils.json import strict_constant

from automation.services.payloads import MAX_JSON_DEPTH, json_depth_exceeds
from entities.services import unstorable_text

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# Only these escapes decode to NUL or a surrogate (raw ones are not valid JSON / UTF-8).
_RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


def max_body_bytes() -> int:
    """The smaller of ENTITYFLOW_MAX_BODY_BYTES and Django's DATA_UPLOAD_MAX_MEMORY_SIZE."""
    limits = [int(getattr(settings, "ENTITYFLOW_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))]
    if settings.DATA_UPLOAD_MAX_MEMORY_SIZE is not None:
        limits.append(int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE))
    return min(limits)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than {limit} bytes.")


def check_content_length(meta: dict) -> None:
    try:
        length = int(meta.get("CONTENT_LENGTH") or 0)
    except (TypeError, ValueError):
        raise ParseError("The Content-Length header is not a number.") from None
    limit = max_body_bytes()
    if length > limit:
        raise too_large(limit)


class LimitedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        if stream is None:
            return {}
        limit = max_body_bytes()
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise too_large(limit)
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = raw.decode(encoding)
            value = json.loads(text, parse_constant=strict_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"The request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise ParseError(too_deep_message()) from None
        check_storable_json(value, text)
        return value


def too_deep_message() -> str:
    return f"The request body nests deeper than {MAX_JSON_DEPTH} levels."


def check_storable_json(value: Any, text: str) -> None:
    """ParseError (400) when too deep; ValidationError (422, the field named) when a
    string or key holds a NUL character or a lone surrogate."""
    if json_depth_exceeds(value):
        raise ParseError(too_deep_message())
    if not _RISKY_ESCAPE.search(text):
        return
    problem = unstorable_text(value)
    if problem:
        where, message = problem
        raise ValidationError({where or "non_field_errors": [message]})
