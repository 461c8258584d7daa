"""Demo API processes for `load_demo`. They run offline: "Copy order to HubSpot" needs
a HubSpot token, so it is created disabled unless one is configured (see
docs/user-guide/integrations.md, the demo)."""

import os

from django.conf import settings

from automation.connections.secrets import SecretDecryptError
from automation.connections.services import (
    connection_create,
    connection_credentials,
    connection_update,
)
from automation.models import ApiProcess, Connection
from automation.services.processes import process_save
from entities.demo import DEMO_USERNAME
from entities.models import EntityType

HUBSPOT_CONNECTION = "hubspot"
HUBSPOT_TOKEN_ENV = "HUBSPOT_ACCESS_TOKEN"  # noqa: S105 - a variable name
HUBSPOT_PLACEHOLDER = "pat-demo-placeholder-enter-your-private-app-token"  # noqa: S105
COPY_TO_HUBSPOT_SLUG = "copy-order-to-hubspot"

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


_HUBSPOT = {"connection": HUBSPOT_CONNECTION}
COPY_TO_HUBSPOT = {
    "steps": [
        {"id": "contact", "name": "Upsert the contact by email", "type": "function",
         "function": "hubspot.upsert_contact", "next": "deal",
         "config": {"retries": 3, "params": {
             **_HUBSPOT, "email": "{{ entity.data.customer.email }}",
             "properties": {"firstname": "{{ entity.data.customer.name }}"}}}},
        {"id": "deal", "name": "Create or update the deal", "type": "function",
         "function": "hubspot.upsert_deal", "next": "associate",
         "config": {"retries": 3, "params": {
             **_HUBSPOT, "dealname": "Order {{ entity.reference }}",
             "properties": {"amount": "{{ entity.data.total }}",
                            "pipeline": "default", "dealstage": "appointmentscheduled"}}}},
        {"id": "associate", "name": "Associate the deal with the contact", "type": "function",
         "function": "hubspot.associate",
         "config": {"retries": 3, "params": {
             **_HUBSPOT, "fromObjectType": "deals", "fromObjectId": "{{ steps.deal.output.id }}",
             "toObjectType": "contacts", "toObjectId": "{{ steps.contact.output.id }}"}}},
    ],
    "triggers": [{"type": "status", "config": {"entityType": "order", "status": "received"},
                  "condition": 'has(entity.data.customer.email) '
                               '&& entity.data.customer.email != ""'}],
}


def demo_hubspot_connection_ensure() -> tuple[Connection, bool]:
    """The `hubspot` connection (base URL from HUBSPOT_BASE_URL, token from the
    HUBSPOT_ACCESS_TOKEN environment variable, else a placeholder), and whether this
    call just configured a real token. An existing connection is kept as the admin left
    it; only a placeholder token is replaced when the variable is set."""
    token = os.environ.get(HUBSPOT_TOKEN_ENV, "").strip()
    connection = Connection.objects.filter(name=HUBSPOT_CONNECTION).first()
    if connection is None:
        connection = connection_create(
            provider="hubspot", name=HUBSPOT_CONNECTION, base_url=settings.HUBSPOT_BASE_URL,
            credentials={"accessToken": token or HUBSPOT_PLACEHOLDER})
        return connection, bool(token)
    if token and not hubspot_token_configured(connection):
        connection_update(connection=connection, credentials_changes={"accessToken": token})
        return connection, True
    return connection, False


def hubspot_token_configured(connection: Connection) -> bool:
    try:
        stored = connection_credentials(connection).get("accessToken")
    except SecretDecryptError:
        return True  # unreadable here; not ours to replace
    return bool(stored) and stored != HUBSPOT_PLACEHOLDER


def _copy_to_hubspot_ensure(order: EntityType) -> ApiProcess:
    """Disabled until a token is configured; an existing process keeps its enabled flag
    (someone may have turned it on in the admin) unless a token was configured just now."""
    connection, just_configured = demo_hubspot_connection_ensure()
    existing = ApiProcess.objects.filter(slug=COPY_TO_HUBSPOT_SLUG).first()
    if existing is None or just_configured:
        enabled = hubspot_token_configured(connection)
    else:
        enabled = existing.enabled
    return process_save(
        slug=COPY_TO_HUBSPOT_SLUG, name="Copy order to HubSpot", entity_type=order,
        description="Upserts the customer as a contact (by email), creates or updates the "
                    "order's deal and associates them. Needs a HubSpot private-app token "
                    "on the 'hubspot' connection.",
        definition=COPY_TO_HUBSPOT, enabled=enabled)


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
        _copy_to_hubspot_ensure(order),
    ]
