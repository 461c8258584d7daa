"""Request metrics for /metrics: how many requests, and how long they took, by view,
method and status class.

prometheus_client keeps these in the process. Under several app-server processes, set
PROMETHEUS_MULTIPROC_DIR (an empty directory shared by them, emptied at each start) so
every process writes its numbers there and a scrape of any one sums them all
(docs/operating.md#metrics).
"""

import os
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

disable_created_metrics()  # no *_created series: they double what a scrape carries
REGISTRY = CollectorRegistry(auto_describe=True)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
REQUESTS = Counter("entityflow_http_requests", "HTTP requests answered.",
                   ["view", "method", "status"], registry=REGISTRY)
LATENCY = Histogram("entityflow_http_request_duration_seconds",
                    "Time from a request reaching Django to its response.",
                    ["view", "method"], buckets=BUCKETS, registry=REGISTRY)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetricsMiddleware:
    """Outermost, so the time includes every other middleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        view = _view_name(request)
        method = request.method if request.method in METHODS else "other"
        LATENCY.labels(view, method).observe(time.perf_counter() - started)
        REQUESTS.labels(view, method, f"{response.status_code // 100}xx").inc()
        return response


def _view_name(request) -> str:
    """The URL pattern's name (bounded: never the path, which holds ids)."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return match.view_name or getattr(match, "_func_path", "") or "unnamed"


def request_metrics_text() -> bytes:
    """This process's request metrics, or every process's in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
