"""OpenTelemetry traces: set up once per process, off unless an exporter is configured.

`ENTITYFLOW_TRACING` (settings, from the environment) picks the exporter: `otlp` (the
optional `opentelemetry-exporter-otlp-proto-http`, configured by the standard
`OTEL_EXPORTER_OTLP_*` variables), `console` (one JSON object per span and line, to
`ENTITYFLOW_TRACING_FILE` or standard output) or `off`. While it is off every helper
here returns at its first line: no span is made, no header is read or sent, nothing is
stored (docs/operating.md#tracing).

A run is one trace that may last days and move between workers, so its context is a
W3C `traceparent` stored on the run row (`run_context()` makes it when the run starts);
each step's span is a child of it, and the run's own span is written when the run ends
with the span id chosen at its start (`RunIds`, the SDK's id-generator hook). Outbound
calls carry the current context (`inject`), which the caller sets with the OTel context
API, so this layer never needs to know what a run is.
"""

import contextvars
import os
import random
import re
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

MODES = ("off", "console", "otlp")
SCOPE = "entityflow"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_propagator = TraceContextTextMapPropagator()  # W3C traceparent/tracestate only
_provider = None  # the SDK TracerProvider of this process, once configured
_forced_ids: contextvars.ContextVar = contextvars.ContextVar("entityflow_forced_ids",
                                                             default=None)


def mode() -> str:
    value = str(getattr(settings, "ENTITYFLOW_TRACING", "off") or "off").lower()
    return value if value in MODES else "off"


def enabled() -> bool:
    """True once `configure()` installed an exporter in this process."""
    return _provider is not None


def configure(exporter=None):
    """Install the SDK's tracer provider for the configured mode (once per process);
    `exporter` replaces the configured one (tests pass the in-memory exporter). Returns
    the provider, or None when tracing is off."""
    global _provider
    if exporter is None and mode() == "off":
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if _provider is not None:
        shutdown()
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME")
                                or getattr(settings, "ENTITYFLOW_TRACING_SERVICE", "entityflow")})
    provider = TracerProvider(resource=resource, id_generator=RunIds())
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif mode() == "console":
        provider.add_span_processor(SimpleSpanProcessor(_console_exporter()))
    else:
        # the process that forks the workers: the SDK restarts the export thread in a child
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter()))
    _provider = provider
    return provider


def shutdown() -> None:
    """Flush and stop this process's exporter; tracing is off afterwards."""
    global _provider
    provider, _provider = _provider, None
    if provider is not None:
        provider.shutdown()


def _otlp_exporter():
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:  # an optional dependency: say which one
        raise RuntimeError("ENTITYFLOW_TRACING=otlp needs the OTLP exporter: install "
                           "entityflow[otlp] (opentelemetry-exporter-otlp-proto-http).") from exc
    return OTLPSpanExporter()  # endpoint, headers, timeout: the OTEL_EXPORTER_OTLP_* variables


def _console_exporter():
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    path = getattr(settings, "ENTITYFLOW_TRACING_FILE", "")
    out = open(path, "a", buffering=1, encoding="utf-8") if path else sys.stdout  # noqa: SIM115
    return ConsoleSpanExporter(out=out,
                               formatter=lambda span: span.to_json(indent=None) + "\n")


def tracer():
    return (_provider or trace.get_tracer_provider()).get_tracer(SCOPE)


class RunIds(RandomIdGenerator):
    """The SDK's random ids, except while `_forced_ids` names the ones to use: a run's
    span is written when the run ends, with the ids its steps already used as parent."""

    def generate_span_id(self) -> int:
        forced = _forced_ids.get()
        return forced[1] if forced else super().generate_span_id()

    def generate_trace_id(self) -> int:
        forced = _forced_ids.get()
        return forced[0] if forced else super().generate_trace_id()


# -- the stored context of a run ----------------------------------------------------------

@dataclass(frozen=True)
class RunContext:
    traceparent: str  # the run's own span: 00-<trace id>-<span id>-<flags>
    parent_span_id: str  # the caller's span (an inbound traceparent, a parent step), or ""


def run_context() -> RunContext | None:
    """A new run's trace context: in the current trace (a caller's inbound traceparent,
    the step that starts it) or a new one. None while tracing is off."""
    if _provider is None:
        return None
    current = trace.get_current_span().get_span_context()
    span_id = random.getrandbits(64) or 1
    if current.is_valid:
        trace_id, parent, flags = current.trace_id, f"{current.span_id:016x}", current.trace_flags
    else:
        trace_id, parent, flags = random.getrandbits(128) or 1, "", TraceFlags.SAMPLED
    return RunContext(f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}", parent)


def parse(traceparent: str) -> SpanContext | None:
    match = _TRACEPARENT.match(traceparent or "")
    if not match:
        return None
    trace_id, span_id, flags = (int(part, 16) for part in match.groups())
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & 1))


def _context_of(traceparent: str):
    span_context = parse(traceparent)
    if span_context is None:
        return None
    return trace.set_span_in_context(NonRecordingSpan(span_context))


@contextmanager
def span_in(traceparent: str, name: str, attributes: Mapping) -> Iterator[object | None]:
    """A span (current while the block runs) as a child of the stored `traceparent`;
    yields None, and does nothing, when tracing is off or the run has no trace."""
    parent = _context_of(traceparent) if _provider is not None else None
    if parent is None:
        yield None
        return
    with tracer().start_as_current_span(name, context=parent, kind=SpanKind.INTERNAL,
                                        attributes=dict(attributes),
                                        record_exception=False) as span:
        yield span


@contextmanager
def current(traceparent: str) -> Iterator[None]:
    """Make the stored context current (so an outbound call carries it) without a span."""
    parent = _context_of(traceparent) if _provider is not None else None
    if parent is None:
        yield
        return
    token = otel_context.attach(parent)
    try:
        yield
    finally:
        otel_context.detach(token)


def write_span(traceparent: str, parent_span_id: str, name: str, attributes: Mapping, *,
               start: datetime, end: datetime, error: bool = False) -> None:
    """Write a finished span whose ids were chosen before it started (a run's)."""
    own = parse(traceparent) if _provider is not None else None
    if own is None:
        return
    parent = None
    if parent_span_id:
        parent = trace.set_span_in_context(NonRecordingSpan(SpanContext(
            own.trace_id, int(parent_span_id, 16), is_remote=True, trace_flags=own.trace_flags)))
    token = _forced_ids.set((own.trace_id, own.span_id))
    try:
        span = tracer().start_span(name, context=parent or otel_context.Context(),
                                   attributes=dict(attributes),
                                   start_time=int(start.timestamp() * 1e9))
    finally:
        _forced_ids.reset(token)
    if error:
        set_error(span, "failed")
    span.end(end_time=int(end.timestamp() * 1e9))


def set_error(span, description: str) -> None:
    span.set_status(trace.Status(trace.StatusCode.ERROR, description))


# -- propagation ---------------------------------------------------------------------------

def inject(headers: MutableMapping[str, str]) -> None:
    """Add `traceparent` (and `tracestate`) for the current span; nothing while off."""
    if _provider is not None and trace.get_current_span().get_span_context().is_valid:
        _propagator.inject(headers)


@contextmanager
def extracted(headers: Mapping[str, str]) -> Iterator[None]:
    """An inbound request's `traceparent` as the current context while the block runs
    (a run it starts joins the caller's trace); nothing while tracing is off."""
    if _provider is None or not headers.get("traceparent"):
        yield
        return
    token = otel_context.attach(_propagator.extract(headers))
    try:
        yield
    finally:
        otel_context.detach(token)

