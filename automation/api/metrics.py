"""GET /metrics in the Prometheus text format, for staff sessions or
`Authorization: Bearer <ENTITYFLOW_METRICS_TOKEN>`.

The engine's numbers come from a collector whose every query is bounded: live runs and
pending approvals through the status index (as many rows as are in flight), finished runs
and step durations over the most recent ENTITYFLOW_METRICS_WINDOW rows through an index.
A scrape costs the same with ten thousand or a million step rows (docs/performance.md).
"""

import hmac

from django.conf import settings
from django.db.models import Count, Max, Q, Sum
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from automation.api.request_metrics import request_metrics_text
from automation.models import ApprovalRequest, Run, StepRun
from config.api_errors import WWW_AUTHENTICATE, error_body

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LIVE = (Run.Status.PENDING, Run.Status.RUNNING, Run.Status.WAITING)


def metrics_allowed(request) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active and user.is_staff:
        return True
    token = getattr(settings, "ENTITYFLOW_METRICS_TOKEN", "")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode())


def _window() -> int:
    return getattr(settings, "ENTITYFLOW_METRICS_WINDOW", 10_000)


def runs_by_status() -> GaugeMetricFamily:
    """Live runs exactly; finished ones among the most recent runs: an aggregate over
    the newest rows of the created_at index (a LIMIT inside, so never the whole table)."""
    live = Run.objects.filter(status__in=LIVE).order_by().values_list("status")
    counts = dict(live.annotate(n=Count("pk")))
    recent = Run.objects.order_by("-created_at")[:_window()]
    counts.update(recent.aggregate(**{status: Count("pk", filter=Q(status=status))
                                      for status in Run.FINISHED}))
    family = GaugeMetricFamily(
        "entityflow_runs", "Runs by status (finished ones among the most recent "
                           "ENTITYFLOW_METRICS_WINDOW runs).", labels=["status"])
    for status in Run.Status.values:
        family.add_metric([status], counts.get(status, 0))
    return family


def step_duration_histogram() -> HistogramMetricFamily:
    """Over the most recent step runs: a range of the primary key, read through it."""
    newest = StepRun.objects.aggregate(newest=Max("pk"))["newest"] or 0
    finished = StepRun.objects.filter(pk__gt=newest - _window(), duration_ms__isnull=False)
    aggregates = {f"le_{i}": Count("pk", filter=Q(duration_ms__lte=b * 1000))
                  for i, b in enumerate(BUCKETS_SECONDS)}
    row = finished.order_by().aggregate(total=Count("pk"), sum_ms=Sum("duration_ms"), **aggregates)
    buckets = [(str(b), row[f"le_{i}"]) for i, b in enumerate(BUCKETS_SECONDS)]
    return HistogramMetricFamily(
        "entityflow_step_duration_seconds",
        "Time a step took to run (function, condition, ...), over the most recent "
        "ENTITYFLOW_METRICS_WINDOW step runs.",
        buckets=[*buckets, ("+Inf", row["total"])], sum_value=(row["sum_ms"] or 0) / 1000)


def queue_depth() -> GaugeMetricFamily:
    family = GaugeMetricFamily("entityflow_queue_depth", "Tasks waiting in the django-q2 broker.")
    try:
        from django_q.brokers import get_broker

        family.add_metric([], int(get_broker().queue_size() or 0))
    except Exception:  # noqa: BLE001 - a broker outage is reported, not raised
        family.add_metric([], float("nan"))
    return family


def pending_approvals() -> GaugeMetricFamily:
    count = ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING).count()
    return GaugeMetricFamily("entityflow_approvals_pending",
                             "Approvals waiting for a decision.", value=count)


class EngineCollector:
    """Asked once per scrape; nothing is kept between scrapes."""

    def collect(self):
        yield runs_by_status()
        yield step_duration_histogram()
        yield queue_depth()
        yield pending_approvals()


def metrics_text() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector())
    return generate_latest(registry) + request_metrics_text()


@require_GET
def metrics(request):
    if not metrics_allowed(request):
        response = JsonResponse(error_body("unauthorized", "Log in as staff or send the metrics "
                                                           "token as a bearer token."), status=401)
        response["WWW-Authenticate"] = WWW_AUTHENTICATE
        return response
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE)
