"""A tiny OpenTelemetry collector: receives OTLP/HTTP protobuf exports on /v1/traces (what
the optional `otlp` exporter sends) and keeps the spans, decoded, for a test to read."""

from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from werkzeug.wrappers import Response

from .server import FakeServer


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict
    service: str
    error: bool


def _value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class FakeCollector(FakeServer):
    serialize = False

    def handle(self, request, body, listener):
        if request.path != "/v1/traces" or request.content_type != "application/x-protobuf":
            return Response("not an OTLP/HTTP trace export", status=404)
        ExportTraceServiceRequest.FromString(body)  # refuses what is not one
        return Response(ExportTraceServiceResponse().SerializeToString(),
                        content_type="application/x-protobuf")

    def spans(self) -> list[ReceivedSpan]:
        found = []
        for call in list(self.calls):
            if call.path != "/v1/traces":
                continue
            for resource_spans in ExportTraceServiceRequest.FromString(call.body).resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(ReceivedSpan(
                            span.name, span.trace_id.hex(), span.span_id.hex(),
                            span.parent_span_id.hex(),
                            {a.key: _value(a.value) for a in span.attributes},
                            resource.get("service.name", ""), span.status.code == 2))
        return found
