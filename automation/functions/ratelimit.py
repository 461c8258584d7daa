"""Rate limits per connection (and per function step): which limit a call is under, and
the throttle the connector asks before each request (docs/user-guide/rate-limits.md).

A step's first request waits for a free one only briefly (it sleeps in the worker up to
ENTITYFLOW_RATE_LIMIT_MAX_WAIT_SECONDS, its turn reserved in the bucket). Further off,
the step is put off (`StepDeferredError`): the store gives it back, due when a request
should be free, neither failed nor counted as an attempt. A later request of the same
call (an upsert's search, then its write) always waits: putting the call off halfway
would repeat what it already did.
"""

import hashlib
import random
import time
from collections.abc import Callable

from django.conf import settings

from automation.connections.limits import RateLimit, parse_rate_limit
from automation.exceptions import StepDeferredError, StepFailedError
from automation.functions import buckets
from automation.functions.registry import StepContext
from automation.models import Connection
from entities.exceptions import ExpressionError
from entities.expressions import evaluate
from integrations.registry import all_connectors

MID_CALL_MAX_WAIT = 300.0  # a call already under way waits at most this long per request
RATE_LIMITED_EVENT = "rate_limited"


def limit_for(ctx: StepContext, connection: Connection | None, provider: str) -> RateLimit | None:
    """The step's `config.rateLimit`, else the connection's `options.rateLimit`, else the
    connector's documented default. null / 0 at either level: no limit."""
    if "rateLimit" in ctx.step_config:
        return parse_rate_limit(ctx.step_config["rateLimit"])
    return connection_limit(connection, provider)


def connection_limit(connection: Connection | None, provider: str) -> RateLimit | None:
    """The connection's own `options.rateLimit`, else its connector's default."""
    options = connection.options if connection is not None else {}
    if "rateLimit" in (options or {}):
        return parse_rate_limit(options["rateLimit"])
    cls = all_connectors().get(provider)
    return parse_rate_limit(cls.default_rate_limit) if cls is not None else None


def connection_limit_text(connection: Connection) -> str:
    """What a person reads for a connection's limit (the admin shows it)."""
    limit = connection_limit(connection, connection.provider)
    if limit is None:
        return "none"
    own = "rateLimit" in (connection.options or {})
    key = f", one bucket per {limit.key}" if limit.key else ""
    return f"{limit.describe()}{key}{'' if own else ' (the default)'}"


def bucket_key(ctx: StepContext, connection: Connection | None, provider: str,
               limit: RateLimit) -> str:
    """One bucket per connection, limit and value of the limit's key: calls that share
    all three share the bucket, whichever worker, step or process makes them."""
    owner = f"connection:{connection.pk}" if connection is not None else f"provider:{provider}"
    value = ""
    if limit.key:
        try:
            value = str(evaluate(limit.key, ctx.scope))
        except ExpressionError as exc:
            raise StepFailedError(f"rateLimit.key: {exc.message}", code=exc.code,
                                  retryable=False) from None
        value = hashlib.sha256(value.encode()).hexdigest()[:24]
    return f"{owner}:{limit.requests or 0}/{limit.per_seconds:g}:{value}"


def throttle_for(ctx: StepContext, connection: Connection | None,
                 provider: str) -> "Throttle | None":
    limit = limit_for(ctx, connection, provider)
    if limit is None:
        return None
    name = connection.name if connection is not None else provider
    return Throttle(bucket_key(ctx, connection, provider, limit), limit,
                    label=f"the rate limit of '{name}' ({limit.describe()})")


class Throttle:
    """integrations.base.Throttle over one bucket, for one call of one step."""

    def __init__(self, key: str, limit: RateLimit, *, label: str,
                 sleep: Callable[[float], None] = time.sleep):
        self.key, self.limit, self.label, self.sleep = key, limit, label, sleep
        self.sent = 0
        self.waited = 0.0

    def before_request(self) -> None:
        first = self.sent == 0
        max_wait = _max_wait() if first else MID_CALL_MAX_WAIT
        while True:
            granted, wait = buckets.take(self.key, self.limit, max_wait=max_wait)
            if granted:
                break
            if first:
                raise self._deferral(wait)
            self.sleep(min(wait, 5.0))
            self.waited += min(wait, 5.0)
        if wait > 0:
            self.sleep(wait)
            self.waited += wait
        self.sent += 1

    def refused(self, retry_after: float | None) -> None:
        """A 429: the bucket holds for everyone; a call that has done nothing else yet is
        put off as a whole, so no worker sleeps through the hold."""
        seconds = retry_after if retry_after is not None else 1.0
        buckets.hold(self.key, self.limit, seconds)
        if self.sent == 1:
            raise self._deferral(seconds, why="the vendor answered 429")

    def log_to(self, ctx: StepContext) -> None:
        """One line for a call that waited in the worker (none for one that did not)."""
        if self.waited >= 0.05:
            ctx.logs.append({"message": f"waited {buckets.seconds_text(self.waited)} for "
                                        f"{self.label}", "event": RATE_LIMITED_EVENT})

    def _deferral(self, wait: float, why: str = "") -> StepDeferredError:
        # A little spread, so the steps put off together do not all come back at once.
        seconds = wait + random.uniform(0, min(max(0.2, wait * 0.2), 10.0))
        reason = f" ({why})" if why else ""
        return StepDeferredError(f"Delayed by {self.label}{reason}; due again in "
                                 f"{buckets.seconds_text(seconds)}.", seconds=seconds)


def _max_wait() -> float:
    return float(getattr(settings, "ENTITYFLOW_RATE_LIMIT_MAX_WAIT_SECONDS", 2.0))
