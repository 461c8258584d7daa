"""GET /metrics in the Prometheus text format, for staff sessions or
`Authorization: Bearer <ENTITYFLOW_METRICS_TOKEN>`."""

import hmac

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from automation.models import ApprovalRequest, Run, StepRun
from config.api_errors import WWW_AUTHENTICATE, error_body

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def metrics_allowed(request) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active and user.is_staff:
        return True
    token = getattr(settings, "ENTITYFLOW_METRICS_TOKEN", "")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode())


def runs_by_status() -> list[str]:
    counts = dict(Run.objects.values_list("status").annotate(n=Count("id"))
                  .values_list("status", "n"))
    lines = ["# HELP entityflow_runs Runs by status.", "# TYPE entityflow_runs gauge"]
    lines += [f'entityflow_runs{{status="{s}"}} {counts.get(s, 0)}' for s in Run.Status.values]
    return lines


def step_duration_histogram() -> list[str]:
    finished = StepRun.objects.filter(duration_ms__isnull=False)
    aggregates = {f"le_{i}": Count("id", filter=Q(duration_ms__lte=b * 1000))
                  for i, b in enumerate(BUCKETS_SECONDS)}
    row = finished.aggregate(total=Count("id"), sum_ms=Sum("duration_ms"), **aggregates)
    name = "entityflow_step_duration_seconds"
    lines = [f"# HELP {name} Time a step took to run (function, condition, ...).",
             f"# TYPE {name} histogram"]
    lines += [f'{name}_bucket{{le="{b}"}} {row[f"le_{i}"]}' for i, b in enumerate(BUCKETS_SECONDS)]
    lines += [f'{name}_bucket{{le="+Inf"}} {row["total"]}',
              f"{name}_sum {(row['sum_ms'] or 0) / 1000:.3f}",
              f"{name}_count {row['total']}"]
    return lines


def queue_depth() -> list[str]:
    lines = ["# HELP entityflow_queue_depth Tasks waiting in the django-q2 broker.",
             "# TYPE entityflow_queue_depth gauge"]
    try:
        from django_q.brokers import get_broker

        lines.append(f"entityflow_queue_depth {int(get_broker().queue_size() or 0)}")
    except Exception:  # noqa: BLE001 - a broker outage is reported, not raised
        lines.append("entityflow_queue_depth NaN")
    return lines


def pending_approvals() -> list[str]:
    count = ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING).count()
    return ["# HELP entityflow_approvals_pending Approvals waiting for a decision.",
            "# TYPE entityflow_approvals_pending gauge", f"entityflow_approvals_pending {count}"]


@require_GET
def metrics(request):
    if not metrics_allowed(request):
        response = JsonResponse(error_body("unauthorized", "Log in as staff or send the metrics "
                                                           "token as a bearer token."), status=401)
        response["WWW-Authenticate"] = WWW_AUTHENTICATE
        return response
    lines = [*runs_by_status(), *step_duration_histogram(), *queue_depth(), *pending_approvals()]
    return HttpResponse("\n".join(lines) + "\n", content_type=CONTENT_TYPE)
