"""The outbound webhook deliveries, described in the OpenAPI document's `webhooks`
section (SPECTACULAR_SETTINGS["WEBHOOKS"] names the objects below; the section exists
from OpenAPI 3.1 on, hence OAS_VERSION there, and these schemas are JSON Schema).

Each is a raw operation: what we POST to a subscription's URL, the headers that sign
it, and what the receiver's answer means. The payloads are built in
automation.services.notifications; a test checks these schemas against what a real run
end sends.
"""

from drf_spectacular.utils import OpenApiWebhook

HEADERS = [
    ("X-Entityflow-Signature", "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>",
     "t=1733313600,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd"),
    ("X-Entityflow-Delivery", "The delivery's id; the same on every retry of it.",
     "6f1c2f0e-8a4b-4a57-9d0b-3d2f9a1e7c55"),
    ("X-Entityflow-Event", "The event name (as in the body's `event`).", "workflow.completed"),
    ("webhook-id", "Standard Webhooks: the delivery's id (= X-Entityflow-Delivery).",
     "6f1c2f0e-8a4b-4a57-9d0b-3d2f9a1e7c55"),
    ("webhook-timestamp", "Standard Webhooks: unix seconds of this attempt.", "1733313600"),
    ("webhook-signature", "Standard Webhooks: `v1,<base64 HMAC-SHA256>` over "
     "`<webhook-id>.<webhook-timestamp>.<body>`; verify with the `standardwebhooks` package.",
     "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
]
RESPONSES = {
    "2XX": {"description": "Delivered. Any other answer (a redirect included) or no answer "
                           "within the timeout is retried with backoff for up to 3 days."},
}
RUN_FINISHED = {
    "type": "object",
    "required": ["event", "id", "caseId", "status", "workflowDefinitionId", "finishedAt"],
    "properties": {
        "event": {"type": "string", "enum": ["workflow.completed", "workflow.failed"]},
        "id": {"type": "string", "format": "uuid", "description": "The run (execution) id."},
        "caseId": {"type": ["string", "null"], "format": "uuid",
                   "description": "The entity the run was about, if any."},
        "status": {"type": "string", "enum": ["completed", "failed"]},
        "workflowDefinitionId": {"type": "string", "description": "The process slug."},
        "finishedAt": {"type": ["string", "null"], "format": "date-time"},
    },
}


def _approval_event(event: str, extra: dict | None = None) -> dict:
    return {
        "type": "object",
        "required": ["event", "id", "executionId", "step", "approvers", "deadline", "version"],
        "properties": {
            "event": {"type": "string", "enum": [event]},
            "id": {"type": "string", "description": "The approval request id."},
            "executionId": {"type": "string", "format": "uuid"},
            "step": {"type": "string", "description": "The id of the human step waiting."},
            "approvers": {"type": "array", "items": {"type": "string"}},
            "deadline": {"type": ["string", "null"], "format": "date-time"},
            "version": {"type": "integer", "description": "The request version; it goes up "
                        "when a covered entity field changes while the request is pending."},
            **(extra or {}),
        },
    }


CHANGE = {"type": "object", "required": ["field", "before", "after"],
          "properties": {"field": {"type": "string"}, "before": {}, "after": {}}}
APPROVAL_REQUESTED = _approval_event("approval.requested", {"changes": {
    "type": "array", "items": CHANGE,
    "description": "Present when a change re-issued the request: what changed."}})
APPROVAL_REMINDED = _approval_event("approval.reminded")
APPROVAL_ESCALATED = _approval_event("approval.escalated", {"escalatedTo": {
    "type": "array", "items": {"type": "string"},
    "description": "The people (config.escalateTo) who may now decide too."}})
PROCESS_PAUSED = {
    "type": "object",
    "required": ["event", "workflowDefinitionId", "reason", "pausedAt"],
    "properties": {
        "event": {"type": "string", "enum": ["process.paused"]},
        "workflowDefinitionId": {"type": "string", "description": "The process slug."},
        "reason": {"type": "string", "description": "The threshold that was broken."},
        "pausedAt": {"type": "string", "format": "date-time"},
    },
}
EXAMPLES = {
    "workflow.completed": {
        "event": "workflow.completed", "id": "0b9f4c1e-5d7a-4b8e-9a43-2f6c1d8e7b10",
        "caseId": "3c2a9e61-0f4b-4c1d-8e7a-5b6d9f0a1c2e", "status": "completed",
        "workflowDefinitionId": "purchase-approval", "finishedAt": "2026-12-04T12:00:00+00:00"},
    "workflow.failed": {
        "event": "workflow.failed", "id": "0b9f4c1e-5d7a-4b8e-9a43-2f6c1d8e7b11",
        "caseId": None, "status": "failed", "workflowDefinitionId": "purchase-approval",
        "finishedAt": "2026-12-04T12:00:00+00:00"},
    "approval.requested": {
        "event": "approval.requested", "id": "17",
        "executionId": "0b9f4c1e-5d7a-4b8e-9a43-2f6c1d8e7b10", "step": "manager-approval",
        "approvers": ["finance"], "deadline": "2026-12-05T12:00:00+00:00", "version": 1},
    "approval.reminded": {
        "event": "approval.reminded", "id": "17",
        "executionId": "0b9f4c1e-5d7a-4b8e-9a43-2f6c1d8e7b10", "step": "manager-approval",
        "approvers": ["finance"], "deadline": "2026-12-05T12:00:00+00:00", "version": 1},
    "approval.escalated": {
        "event": "approval.escalated", "id": "17",
        "executionId": "0b9f4c1e-5d7a-4b8e-9a43-2f6c1d8e7b10", "step": "manager-approval",
        "approvers": ["finance", "group:directors"], "deadline": "2026-12-05T12:00:00+00:00",
        "version": 1, "escalatedTo": ["group:directors"]},
    "process.paused": {
        "event": "process.paused", "workflowDefinitionId": "order-sync",
        "reason": "30 runs for entity ORD-7 in the last minute (perEntityPerMinute 30): "
                  "a loop that re-triggers itself?",
        "pausedAt": "2026-12-04T12:00:00+00:00"},
}


def _operation(event: str, schema: dict, summary: str) -> dict:
    return {
        "summary": summary,
        "description": (
            "POSTed to each active subscription to this event (or `*`). Signed twice over "
            "the same bytes: `X-Entityflow-Signature` and the Standard Webhooks headers, "
            "both with the subscription's secret. Drop a repeated `webhook-id`: a retry "
            "may deliver an event again."),
        "operationId": "webhook" + "".join(p.title() for p in event.split(".")),
        "parameters": [{"name": name, "in": "header", "required": True,
                        "description": text, "schema": {"type": "string"}, "example": example}
                       for name, text, example in HEADERS],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": schema, "examples": {event: {"value": EXAMPLES[event]}}}}},
        "responses": RESPONSES,
    }


WORKFLOW_COMPLETED = OpenApiWebhook("workflow.completed", {"post": _operation(
    "workflow.completed", RUN_FINISHED, "A run completed")})
WORKFLOW_FAILED = OpenApiWebhook("workflow.failed", {"post": _operation(
    "workflow.failed", RUN_FINISHED, "A run failed")})
APPROVAL_REQUESTED_HOOK = OpenApiWebhook("approval.requested", {"post": _operation(
    "approval.requested", APPROVAL_REQUESTED, "A human step waits for an approval")})
PROCESS_PAUSED_HOOK = OpenApiWebhook("process.paused", {"post": _operation(
    "process.paused", PROCESS_PAUSED,
    "A process was paused by its circuit breaker; its new starts are held")})
APPROVAL_REMINDED_HOOK = OpenApiWebhook("approval.reminded", {"post": _operation(
    "approval.reminded", APPROVAL_REMINDED,
    "A reminder went to the approvers (config.remindAfter)")})
APPROVAL_ESCALATED_HOOK = OpenApiWebhook("approval.escalated", {"post": _operation(
    "approval.escalated", APPROVAL_ESCALATED,
    "A pending approval was escalated (config.escalateAfter, config.escalateTo)")})
