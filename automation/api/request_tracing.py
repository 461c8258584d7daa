"""An inbound request's W3C `traceparent` (an API call, a webhook into /hooks/) is the
current trace context while the request is served, so a run it starts is a child of the
caller's span (docs/operating.md#tracing). While tracing is off the header is not read."""

import integrations.tracing as tracing


class TraceContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        traceparent = request.META.get("HTTP_TRACEPARENT")
        if not traceparent or not tracing.enabled():
            return self.get_response(request)
        headers = {"traceparent": traceparent,
                   "tracestate": request.META.get("HTTP_TRACESTATE", "")}
        with tracing.extracted(headers):
            return self.get_response(request)
