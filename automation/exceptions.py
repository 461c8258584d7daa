"""Errors raised by the automation app (see config/api_errors.py for their HTTP shape)."""


class AutomationError(Exception):
    code = "automation_error"
    http_status = 400
    default_message = "The automation request failed."

    def __init__(self, message: str | None = None, *, fields: dict | None = None):
        self.message = message or self.default_message
        self.fields = fields or {}
        super().__init__(self.message)


class DefinitionInvalidError(AutomationError):
    code = "invalid_definition"
    http_status = 422
    default_message = "The process definition is not valid."


class FunctionNotFoundError(AutomationError):
    code = "unknown_function"
    http_status = 422
    default_message = "No function has that name."


class FunctionConfigInvalidError(AutomationError):
    code = "invalid_function"
    http_status = 422
    default_message = "The function's action or config is not valid."


class AgentInvalidError(AutomationError):
    code = "invalid_agent"
    http_status = 422
    default_message = "The agent is not valid."


class ProcessDisabledError(AutomationError):
    code = "process_disabled"
    http_status = 409
    default_message = "The process is disabled."


class RunStateError(AutomationError):
    code = "conflict"
    http_status = 409
    default_message = "The run is not in a state that allows this."


class BatchFinishedError(AutomationError):
    code = "conflict"
    http_status = 409
    default_message = "The batch has already finished."


class ApprovalNotAllowedError(AutomationError):
    code = "forbidden"
    http_status = 403
    default_message = "You are not one of this step's approvers."


class StepFailedError(AutomationError):
    """Raised inside a step to fail it with a clear message (and maybe a code)."""

    code = "step_failed"
    retryable = True

    def __init__(self, message: str | None = None, *, code: str | None = None,
                 retryable: bool = True, fields: dict | None = None):
        super().__init__(message, fields=fields)
        if code:
            self.code = code
        self.retryable = retryable


class StepDeferredError(AutomationError):
    """Raised inside a step that may not run yet (its rate limit has no free request):
    the store puts the step off for `seconds`. Not a failure and not an attempt."""

    code = "rate_limited"

    def __init__(self, message: str, *, seconds: float):
        super().__init__(message)
        self.seconds = seconds
