"""Built-in actions that need no outside system."""

import smtplib
from email.utils import formataddr, getaddresses

from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email

from automation.definitions.errors import expression_tree_errors
from automation.exceptions import StepFailedError
from automation.functions import ledger
from automation.functions.registry import StepContext, function
from automation.functions.templating import evaluate_tree, render_text
from entities import services as entity_services

OBJECT = {"type": "object"}


def _output_expressions(params: dict) -> dict[str, list[str]]:
    """Each expression of `output` parses, calls only CEL's functions and names only what
    a step sees (docs/user-guide/expressions.md), checked when the function is saved."""
    return expression_tree_errors(params.get("output"), "output")


def _set_expressions(params: dict) -> dict[str, list[str]]:
    return expression_tree_errors(params.get("set"), "set")


@function("transform", cheap=True, schema={
    "type": "object", "required": ["output"],
    "properties": {"output": {"type": "object"}},
}, check=_output_expressions)
def transform(ctx: StepContext) -> dict:
    """Build the output from expressions: each value of `output` is evaluated in scope."""
    return evaluate_tree(ctx.params["output"], ctx.scope)


@function("noop", cheap=True, schema=OBJECT)
def noop(ctx: StepContext):
    """Pass the input through unchanged."""
    return ctx.input


@function("entity.set_status", schema={
    "type": "object", "required": ["status"],
    "properties": {"status": {"type": "string", "minLength": 1}},
})
def entity_set_status(ctx: StepContext) -> dict:
    """Move the run's entity to `status` along an allowed transition."""
    entity = _require_entity(ctx)
    if entity.status != ctx.params["status"]:
        entity_services.entity_transition(entity=entity, to_status=ctx.params["status"])
    return {"status": entity.status, "version": entity.version}


@function("entity.update", schema={
    "type": "object", "required": ["set"],
    "properties": {"set": {"type": "object", "minProperties": 1}},
}, check=_set_expressions)
def entity_update(ctx: StepContext) -> dict:
    """Merge fields into the entity's data; each value of `set` is an expression."""
    entity = _require_entity(ctx)
    values = evaluate_tree(ctx.params["set"], ctx.scope)
    entity_services.entity_update(entity=entity, data=values, merge=True)
    return {"status": entity.status, "version": entity.version, "data": entity.data}


@function("email.send", schema={
    "type": "object", "required": ["to", "subject"],
    "properties": {
        "to": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "subject": {"type": "string"}, "body": {"type": "string"},
        "from": {"type": "string"},
    },
})
def email_send(ctx: StepContext) -> dict:
    """Send a mail through Django's email backend; {{ expressions }} in to, subject, body.

    `to` is one address or a list; a string may hold several, comma-separated, and
    `Name <address>` forms. Every address is checked before anything is sent."""
    to = ctx.params["to"]
    rendered = [render_text(value, ctx.scope) for value in ([to] if isinstance(to, str) else to)]
    recipients = _addresses(rendered, "to")
    sender = None
    if ctx.params.get("from"):
        [sender] = _addresses([render_text(ctx.params["from"], ctx.scope)], "from", single=True)
    subject = render_text(ctx.params["subject"], ctx.scope)
    if "\n" in subject or "\r" in subject:
        raise StepFailedError("email.send: the subject must be one line.",
                              code="invalid_email", retryable=False)
    body = render_text(ctx.params.get("body", ""), ctx.scope)

    def send() -> dict:
        try:
            sent = send_mail(subject, body, sender, recipients)
        except (smtplib.SMTPException, OSError) as exc:  # a mail server that is down may recover
            raise StepFailedError(f"email.send: the mail server refused or failed "
                                  f"({type(exc).__name__}: {exc}).", code="email_failed") from None
        ctx.log(f"sent to {', '.join(recipients)}")
        return {"sent": sent, "to": recipients, "subject": subject}

    # A mail is an external effect: the ledger sends it once (functions.ledger).
    return ledger.once(ctx, "email.send",
                       {"to": recipients, "from": sender, "subject": subject, "body": body}, send)


def _addresses(values: list[str], field: str, *, single: bool = False) -> list[str]:
    """The addresses in `values`, or a clear, non-retried step error naming the bad one."""
    found: list[str] = []
    for index, value in enumerate(values):
        where = field if single else f"{field}[{index}]"
        pairs = getaddresses([value]) if "\n" not in value and "\r" not in value else None
        if not pairs:
            raise StepFailedError(f"email.send: {where} {value!r} is not an email address.",
                                  code="invalid_recipient", retryable=False)
        for name, address in pairs:
            try:
                validate_email(address)
            except ValidationError:
                raise StepFailedError(
                    f"email.send: {where} {value!r} is not a valid email address.",
                    code="invalid_recipient", retryable=False) from None
            found.append(formataddr((name, address)))
    if not found or (single and len(found) > 1):
        raise StepFailedError(f"email.send: give {'one address' if single else 'a recipient'} "
                              f"in '{field}'.", code="invalid_recipient", retryable=False)
    return found


def _require_entity(ctx: StepContext):
    if ctx.entity is None:
        raise StepFailedError("This step needs an entity, but the run has none.",
                              code="no_entity", retryable=False)
    return ctx.entity
