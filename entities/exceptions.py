"""Errors raised by the entities app.

Each error declares the HTTP status and machine-readable code the API error handler
uses, so the one error shape of docs/rest-api.md is produced without per-view mapping.
"""


class EntitiesError(Exception):
    code = "entities_error"
    http_status = 400
    default_message = "The entity operation failed."

    def __init__(self, message: str | None = None, *, fields: dict | None = None):
        self.message = message or self.default_message
        self.fields = fields or {}
        super().__init__(self.message)


class TransitionNotAllowedError(EntitiesError):
    code = "transition_not_allowed"
    http_status = 422
    default_message = "That status change is not allowed for this entity type."


class StaleEntityError(EntitiesError):
    code = "conflict"
    http_status = 409
    default_message = "The entity was changed by someone else; reload it and try again."


class EntityDataInvalidError(EntitiesError):
    code = "invalid_data"
    http_status = 422
    default_message = "The entity data does not match its type's schema."


class UnstorableTextError(EntityDataInvalidError):
    """NUL characters and lone surrogates: PostgreSQL refuses them, so every database does."""

    code = "invalid"
    default_message = "The text holds characters that cannot be stored."


class ExpressionError(EntitiesError):
    """Base of every expression failure; `message` is safe to show to users."""

    code = "invalid_expression"
    http_status = 422
    default_message = "The expression is not valid."


class ExpressionSyntaxError(ExpressionError):
    default_message = "The expression could not be parsed."


class ExpressionTooComplexError(ExpressionError):
    code = "expression_too_complex"
    default_message = "The expression is too large or nests too deeply."


class ExpressionEvaluationError(ExpressionError):
    code = "expression_evaluation_failed"
    default_message = "The expression could not be evaluated."
