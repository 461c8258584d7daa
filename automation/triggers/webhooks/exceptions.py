"""Refusals of an inbound webhook, each with the HTTP status it answers (docs/rest-api.md)."""

from automation.exceptions import AutomationError


class WebhookError(AutomationError):
    code = "webhook_error"
    http_status = 400
    default_message = "The webhook request was refused."


class WebhookNotFoundError(WebhookError):
    code = "not_found"
    http_status = 404
    default_message = "No webhook trigger listens on this path."


class WebhookMethodNotAllowedError(WebhookError):
    code = "method_not_allowed"
    http_status = 405
    default_message = "This webhook does not accept that method."

    def __init__(self, message: str | None = None, *, allowed: list[str]):
        super().__init__(message or f"{self.default_message} Use {', '.join(allowed)}.")
        self.allowed = allowed


class WebhookPayloadTooLargeError(WebhookError):
    code = "payload_too_large"
    http_status = 413
    default_message = "The webhook body is too large."


class WebhookUnauthorizedError(WebhookError):
    code = "unauthorized"
    http_status = 401
    default_message = "The webhook request is not authenticated."

    def __init__(self, message: str | None = None, *, code: str | None = None):
        super().__init__(message)
        if code:
            self.code = code


class WebhookBodyInvalidError(WebhookError):
    code = "bad_request"
    http_status = 400
    default_message = "The webhook body must be JSON."


class WebhookRateLimitedError(WebhookError):
    code = "rate_limited"
    http_status = 429
    default_message = "Too many requests on this public webhook; try again later."

    def __init__(self, message: str | None = None, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after
