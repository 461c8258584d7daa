"""The API process list's columns, computed in the list's one query (no query per row)."""

from datetime import timedelta

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from automation.models import ApiProcess, Run
from automation.views.present import status_pill

RATE_DAYS = 7


def annotate_process_list(qs: QuerySet[ApiProcess]) -> QuerySet[ApiProcess]:
    """Last run (time, status, id) and the last week's completed / failed counts."""
    runs = Run.objects.filter(process=OuterRef("pk"))
    last = runs.order_by("-created_at")
    recent = runs.filter(created_at__gte=timezone.now() - timedelta(days=RATE_DAYS)).order_by()

    def count(status: str):
        counted = recent.filter(status=status).values("process").annotate(n=Count("pk")).values("n")
        return Coalesce(Subquery(counted[:1], output_field=IntegerField()), 0)

    return qs.annotate(
        last_run_at=Subquery(last.values("created_at")[:1]),
        last_run_status=Subquery(last.values("status")[:1]),
        last_run_id=Subquery(last.values("id")[:1]),
        ok_7d=count(Run.Status.COMPLETED),
        failed_7d=count(Run.Status.FAILED),
    )


def last_run_cell(obj: ApiProcess):
    if not getattr(obj, "last_run_at", None):
        return format_html('<span class="ef-quiet">{}</span>', "never run")
    url = reverse("admin:automation_run_change", args=[obj.last_run_id])
    seconds = (timezone.now() - obj.last_run_at).total_seconds()
    when = "just now" if seconds < 60 else f"{timesince(obj.last_run_at).split(',')[0]} ago"
    return format_html(
        '<a href="{}" class="ef-nowrap">{} <span class="ef-quiet">{}</span></a>',
        url,
        status_pill(obj.last_run_status),
        when,
    )


def success_rate_cell(obj: ApiProcess):
    ok, failed = getattr(obj, "ok_7d", 0) or 0, getattr(obj, "failed_7d", 0) or 0
    if not ok + failed:
        return format_html('<span class="ef-quiet">{}</span>', "no runs")
    rate = 100 * ok / (ok + failed)
    level = "good" if rate >= 90 else "fair" if rate >= 60 else "poor"
    return format_html(
        '<span class="ef-rate ef-rate-{}" title="{} completed, {} failed in the last {} days">'
        '<span class="ef-rate-bar"><span style="width:{}%"></span></span>{}%</span>',
        level,
        ok,
        failed,
        RATE_DAYS,
        f"{rate:.0f}",
        f"{rate:.0f}",
    )
