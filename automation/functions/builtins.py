"""Built-in actions that need no outside system."""

from django.core.mail import send_mail

from automation.exceptions import StepFailedError
from automation.functions.registry import StepContext, function
from automation.functions.templating import evaluate_tree, render_text
from entities import services as entity_services

OBJECT = {"type": "object"}


@function("transform", cheap=True, schema={
    "type": "object", "required": ["output"],
    "properties": {"output": {"type": "object"}},
})
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
})
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
    """Send a mail through Django's email backend; {{ expressions }} in subject and body."""
    to = ctx.params["to"]
    recipients = [render_text(addr, ctx.scope) for addr in ([to] if isinstance(to, str) else to)]
    subject = render_text(ctx.params["subject"], ctx.scope)
    sent = send_mail(subject, render_text(ctx.params.get("body", ""), ctx.scope),
                     ctx.params.get("from"), recipients)
    ctx.log(f"sent to {', '.join(recipients)}")
    return {"sent": sent, "to": recipients, "subject": subject}


def _require_entity(ctx: StepContext):
    if ctx.entity is None:
        raise StepFailedError("This step needs an entity, but the run has none.",
                              code="no_entity", retryable=False)
    return ctx.entity
