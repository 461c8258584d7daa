"""Rate limits. Counters live in Django's cache: with the default local-memory cache each
server process counts on its own, so N processes allow up to N times the limit; point
CACHES at Redis or Memcached to share one count."""

from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle

from automation.api.auth import ApiClientUser


class ClientRateThrottle(SimpleRateThrottle):
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


class AuthEndpointThrottle(AnonRateThrottle):
    """authorize/refresh, per client IP (rate `auth` in DEFAULT_THROTTLE_RATES)."""

    scope = "auth"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
