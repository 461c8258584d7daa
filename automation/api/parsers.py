"""Request bodies: JSON only, and never more than the configured size.

The size is checked twice: from Content-Length before anything is read (so a huge
upload is refused without reading it), and while parsing (a body without an honest
Content-Length is read at most one byte past the limit)."""

import json

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils.json import strict_constant

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


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
            return json.loads(raw.decode(encoding), parse_constant=strict_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"The request body is not valid JSON: {exc}") from None
