"""Batches: the control panel stands in for the list, the batch page for the form."""

from django.contrib import admin
from django.shortcuts import redirect
from django.urls import path

from automation.admin.base import ReadOnlyAdmin
from automation.models import Batch
from automation.views.batches import (
    batch_cancel_view,
    batch_outcomes,
    batch_page,
    batch_pause_view,
    batch_progress_view,
    batch_resume_view,
    batch_retry_view,
    bulk_rerun_view,
)
from automation.views.common import bind
from automation.views.panel import control_panel, panel_count, panel_start


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    def get_urls(self):
        return [
            path("count/", bind(self, panel_count), name="automation_panel_count"),
            path("start/", bind(self, panel_start), name="automation_panel_start"),
            path(
                "<uuid:object_id>/progress/",
                bind(self, batch_progress_view),
                name="automation_batch_progress",
            ),
            path(
                "<uuid:object_id>/outcomes/",
                bind(self, batch_outcomes),
                name="automation_batch_outcomes",
            ),
            path(
                "<uuid:object_id>/cancel/",
                bind(self, batch_cancel_view),
                name="automation_batch_cancel",
            ),
            path("<uuid:object_id>/pause/", bind(self, batch_pause_view),
                 name="automation_batch_pause"),
            path("<uuid:object_id>/resume/", bind(self, batch_resume_view),
                 name="automation_batch_resume"),
            path("reruns/", bind(self, bulk_rerun_view), name="automation_bulk_rerun"),
            path(
                "<uuid:object_id>/retry-failed/",
                bind(self, batch_retry_view),
                name="automation_batch_retry",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        return control_panel(request, self)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return batch_page(request, self, object_id)

    def add_view(self, request, form_url="", extra_context=None):
        return redirect("admin:automation_batch_changelist")
