"""Errors raised by connectors and the outbound HTTP guard.

Every failure that leaves a connector is a `ConnectorError`: no `requests` exception
escapes. Class attributes tell callers what to do without inspecting messages:
`retryable` says whether the engine should schedule another attempt (after
`retry_after` seconds when the vendor said so), and `code` / `http_status` are what
the API error handler (docs/rest-api.md) answers when such an error reaches a view, for
example from "test connection". The vendor's own status is kept in `upstream_status`.
"""


class ConnectorError(Exception):
    code = "connector_error"
    http_status = 502
    retryable = False
    default_message = "The call to the external service failed."

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        upstream_status: int | None = None,
        vendor_code: str | None = None,
        fields: dict | None = None,
    ):
        self.message = message or self.default_message
        self.retry_after = retry_after
        self.upstream_status = upstream_status
        self.vendor_code = vendor_code
        self.fields = fields or {}
        # Credentials renewed before the failure (e.g. a refreshed Dropbox token): store them.
        self.updated_credentials: dict | None = None
        super().__init__(self.message)

    def redact(self, secrets: list[str]) -> "ConnectorError":
        """Replace every raw secret in the message (in place) and return self."""
        message = self.message
        for secret in sorted((s for s in secrets if s), key=len, reverse=True):
            message = message.replace(secret, "[redacted]")
        self.message = message
        self.args = (message,)
        return self


class ConnectorAuthError(ConnectorError):
    code = "connector_auth_failed"
    default_message = "The external service rejected the credentials."


class ConnectorRateLimitedError(ConnectorError):
    code = "connector_rate_limited"
    http_status = 503
    retryable = True
    default_message = "The external service is rate limiting us; try again later."


class ConnectorQuotaExceededError(ConnectorError):
    """The account ran out of quota or credit: waiting will not help."""

    code = "connector_quota_exceeded"
    default_message = "The external account has exceeded its quota."


class ConnectorUnavailableError(ConnectorError):
    code = "connector_unavailable"
    http_status = 503
    retryable = True
    default_message = "The external service is unavailable or did not answer in time."


class ConnectorTimeoutError(ConnectorError):
    """A statement ran past its time limit and was cancelled. Not retried: the same
    work would most likely run out of time again, and load the database each time."""

    code = "connector_timeout"
    http_status = 504
    default_message = "The external service did not finish the work in time."


class ConnectorBadResponseError(ConnectorError):
    code = "connector_bad_response"
    default_message = "The external service sent a response we could not understand."


class ConnectorConflictError(ConnectorError):
    code = "connector_conflict"
    http_status = 409
    default_message = "The external service reported a conflict."


class ConnectorRequestError(ConnectorError):
    code = "connector_request_rejected"
    default_message = "The external service rejected the request."


class OutboundBlockedError(ConnectorError):
    code = "outbound_blocked"
    http_status = 422
    default_message = "Outbound requests to that address are not allowed."


class ConnectorConfigError(ConnectorError):
    code = "connector_misconfigured"
    http_status = 422
    default_message = "The connection or action configuration is not valid."


class SignatureError(ConnectorError):
    """An inbound webhook signature is missing, malformed, wrong or too old."""

    code = "invalid_signature"
    http_status = 401
    default_message = "The webhook signature is not valid."
