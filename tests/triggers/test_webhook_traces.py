"""A webhook into /hooks/ with a W3C traceparent starts its run in the caller's trace
(docs/operating.md#tracing); with tracing off the header is ignored."""

import pytest

from automation.models import Run
from tests.triggers.test_webhook_triggers import SIGNED, post

pytestmark = pytest.mark.django_db

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_webhook_with_a_traceparent_starts_its_run_in_the_callers_trace(
        client, save_process, committed, trace_spans):
    save_process("stripe-payments", [SIGNED])
    with committed():
        answer = post(client, "/hooks/webhooks/stripe", {"type": "charge.succeeded"},
                      headers={"traceparent": CALLER})
    assert answer.status_code == 202, answer.content
    run = Run.objects.get()
    assert run.traceparent.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert run.trace_parent_id == "00f067aa0ba902b7"
    assert {f"{s.context.trace_id:032x}" for s in trace_spans.get_finished_spans()} == {
        "4bf92f3577b34da6a3ce929d0e0e4736"}


def test_with_tracing_off_a_webhooks_traceparent_is_ignored(client, save_process, committed):
    save_process("stripe-payments", [SIGNED])
    with committed():
        post(client, "/hooks/webhooks/stripe", {"type": "charge.succeeded"},
             headers={"traceparent": CALLER})
    assert Run.objects.get().traceparent == ""
