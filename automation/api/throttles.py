"""Rate limits. Counters live in Django's cache: Redis when REDIS_URL is set, so every
server process shares one count; with the local-memory fallback each process counts on
its own, so N processes allow up to N times the limit. A caller's address is
REMOTE_ADDR; X-Forwarded-For counts only for ENTITYFLOW_TRUSTED_PROXIES hops (DRF's
NUM_PROXIES), so sending the header does not buy a fresh limit."""

import logging

from redis.exceptions import RedisError
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle

from automation.api.auth import ApiClientUser

logger = logging.getLogger(__name__)


class CountOrAllow:
    """A cache that cannot be reached (Redis down) lets the request through, logged,
    instead of answering 500: the limit protects the service, it is not the service."""

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except (RedisError, OSError):
            logger.warning("Rate limit not checked: the cache is unreachable.", exc_info=True)
            return True


class ClientRateThrottle(CountOrAllow, SimpleRateThrottle):
    """ApiClient.rate_limit_per_minute, per client (0 = unlimited). Staff are not limited."""

    scope = "client"

    def __init__(self):  # the rate is read from the client row on each request
        self.rate = None

    def allow_request(self, request, view) -> bool:
        user = request.user
        if not isinstance(user, ApiClientUser) or not user.api_client.rate_limit_per_minute:
            return True
        self.rate = f"{user.api_client.rate_limit_per_minute}/m"
        self.num_requests, self.duration = user.api_client.rate_limit_per_minute, 60
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": request.user.api_client.pk}


class AuthEndpointThrottle(CountOrAllow, AnonRateThrottle):
    """authorize/refresh, per client IP (rate `auth` in DEFAULT_THROTTLE_RATES)."""

    scope = "auth"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
