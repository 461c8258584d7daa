"""The `rateLimit` a connection (its options) or a function step (its config) sets:
`{"requests": n, "perSeconds": s, "key": "<CEL>"}`, or null / 0 for none
(docs/user-guide/rate-limits.md).

Only the shape and its checks live here, low enough for both the connection services
and the definition's validation to use; the bucket that enforces a limit across every
worker is automation.functions.ratelimit.
"""

from dataclasses import dataclass

from entities.exceptions import ExpressionError
from entities.expressions import validate_expression

KEYS = {"requests", "perSeconds", "key"}
MAX_REQUESTS = 1_000_000
MAX_PER_SECONDS = 86_400


@dataclass(frozen=True)
class RateLimit:
    """`requests` per `per_seconds`, one bucket per value of `key` (None: one bucket).
    `requests` None: no count, only a vendor's Retry-After holds the bucket."""

    requests: int | None
    per_seconds: float
    key: str | None = None

    def describe(self) -> str:
        if self.requests is None:
            return "the vendor's Retry-After only"
        return f"{self.requests} requests per {self.per_seconds:g} s"


def disabled(value) -> bool:
    """`rateLimit: null` or `0` (or `false`): no limit, not even the default."""
    return value is None or value is False or value == 0


def rate_limit_problems(value) -> list[str]:
    """What is wrong with a `rateLimit` value (empty when it may be saved)."""
    if disabled(value):
        return []
    if not isinstance(value, dict):
        return ["rateLimit is an object {requests, perSeconds, key?}, or null / 0 for none."]
    problems = [f"Unknown key '{key}'; rateLimit has requests, perSeconds and key."
                for key in sorted(set(value) - KEYS)]
    requests, per = value.get("requests"), value.get("perSeconds")
    if requests is not None and (not isinstance(requests, int) or isinstance(requests, bool)
                                 or not 1 <= requests <= MAX_REQUESTS):
        problems.append(f"requests must be a whole number from 1 to {MAX_REQUESTS:,}.")
    if requests is None and "requests" not in value:
        problems.append("requests is required (how many requests per perSeconds).")
    if not isinstance(per, int | float) or isinstance(per, bool) or not 0 < per <= MAX_PER_SECONDS:
        problems.append(f"perSeconds must be a number of seconds above 0, "
                        f"at most {MAX_PER_SECONDS:,}.")
    key = value.get("key")
    if key is not None:
        if not isinstance(key, str) or not key.strip():
            problems.append("key is a CEL expression (text), e.g. \"entity.data.region\".")
        else:
            try:
                validate_expression(key)
            except ExpressionError as exc:
                problems.append(f"key: {exc.message}")
    return problems


def parse_rate_limit(value) -> RateLimit | None:
    """A checked `rateLimit` value as a RateLimit (None: no limit)."""
    if disabled(value):
        return None
    return RateLimit(requests=value.get("requests"), per_seconds=float(value["perSeconds"]),
                     key=value.get("key") or None)
