"""Database values as JSON, because a step's output is stored and shown as JSON."""

import base64
import math
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

_MAX_EXACT_INT = 2**53  # integers a JSON reader parses exactly


def jsonable(value: Any) -> Any:
    """Numbers stay numbers when nothing is lost, else text; dates and times in ISO 8601;
    bytes in base64; anything else (UUIDs, addresses, ranges) as its text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return str(value)


def _decimal(value: Decimal) -> int | float | str:
    """An exact int or float when there is one (12.50 → 12.5), else the digits as text,
    so a NUMERIC amount never loses a cent on the way."""
    if not value.is_finite():
        return str(value)
    if value == value.to_integral_value() and abs(value) < _MAX_EXACT_INT:
        return int(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else str(value)
