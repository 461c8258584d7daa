"""Traces through the API (docs/operating.md#tracing): a caller's W3C traceparent makes
the run a child of its span, each step is a span in that trace, and the outbound calls
and webhook deliveries carry it on. Steps run in the request here (the test settings'
sync mode); tests/automation/test_traces_worker.py has the same with a real worker."""

import pytest

from automation.api.services import function_save
from automation.connections.services import connection_create
from automation.models import Run, WebhookDelivery
from automation.services.processes import process_save
from automation.services.webhooks import webhook_subscription_create
from tests.integrations.fakes.echo import EchoServer

pytestmark = pytest.mark.django_db(transaction=True)

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def hubspot_process(hubspot_fake, slug="copy-deal", triggers=()):
    hubspot = connection_create(provider="hubspot", name=f"hubspot-{slug}",
                                base_url=hubspot_fake.url,
                                credentials={"accessToken": hubspot_fake.token})
    function_save(name=f"{slug}-upsert", action="hubspot.upsert_deal", connection=hubspot,
                  config={"dealname": "Deal {{ input.n }}", "properties": {
                      "amount": "10", "dealstage": "appointmentscheduled", "pipeline": "default"}})
    return process_save(slug=slug, name=slug, definition={"steps": [
        {"id": "copy", "type": "function", "function": f"{slug}-upsert", "next": "done"},
        {"id": "done", "type": "function", "function": "noop"}], "triggers": list(triggers)})


@pytest.fixture
def echo():
    server = EchoServer().start()
    yield server
    server.stop()


def trigger(api, slug: str, **headers):
    return api.post(f"/api/workflow-definitions/{slug}/trigger", {"input": {"n": 1}},
                    format="json", **headers)


def by_name(spans) -> dict:
    named = {}
    for span in spans:
        assert span.name not in named, f"two spans named {span.name}"
        named[span.name] = span
    return named


def test_an_inbound_traceparent_makes_the_run_a_child_of_the_callers_span(
        api, trace_spans, hubspot_fake, echo):
    process = hubspot_process(hubspot_fake)
    webhook_subscription_create(url=f"{echo.url}/hook", events=["workflow.completed"],
                                secret="whsec-test")
    response = trigger(api, process.slug, HTTP_TRACEPARENT=CALLER)
    assert response.status_code in (200, 201, 202), response.content
    run = Run.objects.get()
    assert run.status == Run.Status.COMPLETED, run.error
    assert run.traceparent.split("-")[1] == CALLER_TRACE
    assert run.trace_parent_id == CALLER_SPAN

    spans = by_name(trace_spans.get_finished_spans())
    assert set(spans) == {"step copy", "step done", "run copy-deal"}
    assert {s.context.trace_id for s in spans.values()} == {int(CALLER_TRACE, 16)}
    run_span = spans["run copy-deal"]
    assert run_span.parent.span_id == int(CALLER_SPAN, 16)  # a child of the caller's span
    assert f"{run_span.context.span_id:016x}" == run.traceparent.split("-")[2]
    for step in ("copy", "done"):
        span = spans[f"step {step}"]
        assert span.parent.span_id == run_span.context.span_id
        assert dict(span.attributes) == {
            "entityflow.process": "copy-deal", "entityflow.process.version": 1,
            "entityflow.run.id": str(run.pk), "entityflow.step": step,
            "entityflow.step.type": "function", "entityflow.attempt": 1,
            "entityflow.outcome": "completed"}
    assert run_span.attributes["entityflow.outcome"] == "completed"

    # the vendor call carries the step's span; the webhook delivery the run's trace
    copy_span = spans["step copy"]
    sent = [c.headers.get("Traceparent") for c in hubspot_fake.calls]
    assert sent and set(sent) == {
        f"00-{CALLER_TRACE}-{copy_span.context.span_id:016x}-01"}
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.DELIVERED, delivery.last_error
    hook_calls = [c for c in echo.calls if c.path == "/hook"]
    assert [c.headers.get("Traceparent") for c in hook_calls] == [run.traceparent]


def test_a_published_event_or_an_entity_save_starts_runs_in_the_callers_trace(
        api, trace_spans, order_type):
    noop = [{"id": "a", "type": "function", "function": "noop"}]
    process_save(slug="on-purchase", name="On purchase", definition={"steps": noop, "triggers": [
        {"type": "event", "config": {"eventType": "purchase.created"}}]})
    process_save(slug="on-received", name="On received", entity_type=order_type, definition={
        "steps": noop, "triggers": [
            {"type": "status", "config": {"entityType": "order", "status": "received"}}]})
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    published = api.post("/api/events", {"type": "purchase.created", "data": {"total": 5}},
                         format="json", HTTP_TRACEPARENT=CALLER)
    created = api.post("/api/entities", {"type": "order", "reference": "T-1",
                                         "data": {"customer": {"name": "Ada"}, "total": 5}},
                       format="json", HTTP_TRACEPARENT=other)
    assert published.status_code == 202, published.content
    assert created.status_code == 201, created.content

    finished = trace_spans.get_finished_spans()
    spans = by_name([s for s in finished if s.name.startswith("run ")])
    event_run = Run.objects.get(process__slug="on-purchase")
    assert event_run.traceparent.split("-")[1] == CALLER_TRACE
    assert spans["run on-purchase"].parent.span_id == int(CALLER_SPAN, 16)
    saved_run = Run.objects.get(process__slug="on-received")
    assert saved_run.traceparent.split("-")[1] == other.split("-")[1]
    assert spans["run on-received"].parent.span_id == int(other.split("-")[2], 16)
    assert spans["run on-received"].attributes["entityflow.entity"] == str(saved_run.entity_id)
    # each step's span in its run's trace, naming the entity where the run has one
    steps = {f"{s.context.trace_id:032x}": (s.attributes.get("entityflow.entity"),
                                            s.attributes["entityflow.attempt"],
                                            s.attributes["entityflow.outcome"])
             for s in finished if s.name == "step a"}
    assert steps == {CALLER_TRACE: (None, 1, "completed"),
                     other.split("-")[1]: (str(saved_run.entity_id), 1, "completed")}


def test_a_failed_step_is_an_error_span_with_its_outcome(api, trace_spans, hubspot_fake):
    process = hubspot_process(hubspot_fake, slug="fails")
    hubspot_fake.script(400, {"status": "error", "message": "Property values were not valid",
                              "category": "VALIDATION_ERROR"}, times=10)
    trigger(api, process.slug)
    run = Run.objects.get()
    assert run.status == Run.Status.FAILED
    spans = by_name(trace_spans.get_finished_spans())
    assert set(spans) == {"step copy", "run fails"}  # no caller: a trace of its own
    assert spans["run fails"].parent is None
    assert spans["step copy"].attributes["entityflow.outcome"] == "failed"
    assert not spans["step copy"].status.is_ok
    assert spans["run fails"].attributes["entityflow.outcome"] == "failed"


def test_with_tracing_off_nothing_is_read_stored_or_sent(api, hubspot_fake, echo):
    from integrations import tracing

    assert not tracing.enabled()
    process = hubspot_process(hubspot_fake)
    webhook_subscription_create(url=f"{echo.url}/hook", events=["workflow.completed"],
                                secret="whsec-test")
    trigger(api, process.slug, HTTP_TRACEPARENT=CALLER)
    run = Run.objects.get()
    assert run.status == Run.Status.COMPLETED
    assert (run.traceparent, run.trace_parent_id) == ("", "")
    assert WebhookDelivery.objects.get().traceparent == ""
    calls = [*hubspot_fake.calls, *echo.calls]
    assert calls and not any("Traceparent" in c.headers or "Tracestate" in c.headers
                             for c in calls)


def test_a_run_ended_by_a_decision_writes_its_span_once(api, trace_spans):
    process_save(slug="ask", name="Ask", definition={"steps": [
        {"id": "ask", "type": "human", "config": {"approvers": ["manager@example.com"]}}]})
    trigger(api, "ask", HTTP_TRACEPARENT=CALLER)
    approval = api.get("/api/approvals").json()["results"][0]
    assert [s.name for s in trace_spans.get_finished_spans()] == ["step ask"]
    assert trace_spans.get_finished_spans()[0].attributes["entityflow.outcome"] == "waiting"

    decided = api.post(f"/api/approvals/{approval['id']}/decide",
                       {"approved": True, "decidedBy": "manager@example.com"}, format="json")
    assert decided.status_code == 200, decided.content
    assert Run.objects.get().status == Run.Status.COMPLETED
    spans = by_name(trace_spans.get_finished_spans())  # one run span, not two
    assert set(spans) == {"step ask", "run ask"}
    assert spans["run ask"].context.trace_id == int(CALLER_TRACE, 16)
    assert spans["run ask"].attributes["entityflow.outcome"] == "completed"


def test_a_cancelled_run_writes_its_span(api, trace_spans):
    process_save(slug="ask", name="Ask", definition={"steps": [
        {"id": "ask", "type": "human", "config": {"approvers": ["manager@example.com"]}}]})
    trigger(api, "ask")
    run = Run.objects.get()
    assert api.post(f"/api/executions/{run.pk}/cancel").status_code == 200
    spans = by_name(trace_spans.get_finished_spans())
    assert spans["run ask"].attributes["entityflow.outcome"] == "cancelled"
