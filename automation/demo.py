"""Demo API processes for `load_demo`: they run offline (no outside system needed)."""

from automation.models import ApiProcess
from automation.services.processes import process_save
from entities.demo import DEMO_USERNAME
from entities.models import EntityType

TRIAGE = {
    "steps": [
        {"id": "score", "name": "Score the order", "type": "function", "function": "transform",
         "config": {"params": {"output": {
             "total": "entity.data.total",
             "large": "entity.data.total > 500.0",
             "reference": "entity.reference"}}},
         "next": "check-size"},
        {"id": "check-size", "type": "condition", "condition": "result.large === true",
         "next": "manager-approval", "config": {"else": "auto-accept"}},
        {"id": "manager-approval", "name": "Manager approval", "type": "human",
         "config": {"approvers": [DEMO_USERNAME], "requiredApprovals": 1, "timeout": 259200000},
         "next": "record"},
        {"id": "auto-accept", "type": "function", "function": "transform",
         "config": {"params": {"output": {"approved": "true", "decidedBy": "'rules'"}}},
         "next": "record"},
        {"id": "record", "name": "Record the decision", "type": "function",
         "function": "entity.update",
         "config": {"params": {"set": {"triage": "result"}}}},
    ],
    "triggers": [{"type": "status", "config": {"entityType": "order", "status": "received"}}],
}

SHIP_NOTICE = {
    "steps": [
        {"id": "notify", "name": "Tell the customer", "type": "function", "function": "email.send",
         "config": {"params": {
             "to": "{{ entity.data.customer.email }}",
             "subject": "Your order {{ entity.reference }} is approved",
             "body": "Hello {{ entity.data.customer.name }}, your order of "
                     "{{ entity.data.total }} {{ entity.data.currency }} is on its way."}}},
    ],
    "triggers": [{"type": "manual"}],
}


def demo_processes_ensure() -> list[ApiProcess]:
    order = EntityType.objects.get(key="order")
    return [
        process_save(slug="order-received-triage", name="API process on Order Received",
                     description="Scores each received order; large ones wait for a manager.",
                     entity_type=order, definition=TRIAGE),
        process_save(slug="order-approved-notice", name="Send approval notice",
                     description="Emails the customer (run it from the order page or the "
                                 "control panel).",
                     entity_type=order, definition=SHIP_NOTICE),
    ]
