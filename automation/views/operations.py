"""Operator pages: re-run a finished run from a chosen step (with a preview), and the
circuit breaker of a process (the banner every staff page shows while a process is
paused, and the page that resumes it). docs/user-guide/operating-runs.md."""

import json

from django.contrib import messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from automation.exceptions import AutomationError
from automation.models import ApiProcess, HeldStart, Run, StepRun
from automation.services import breaker
from automation.services.reruns import UNSET, VERSIONS, rerun_plan, run_rerun
from automation.services.runs import process_resume
from automation.views.common import admin_context, get_or_404, require_perm
from automation.views.present import pretty_json


@require_http_methods(["GET", "POST"])
def run_rerun_view(request, model_admin, object_id):
    """GET: the form (step, its input as JSON, version, repeat effects). POST with
    `preview`: the same form and what the re-run would do; POST with `start`: the
    re-run starts and the new attempt's page opens."""
    require_perm(request, "automation.change_run")
    run = get_or_404(Run.objects.select_related("process", "version"), object_id)
    steps = list(run.steps.filter(scope="").order_by("id"))
    source = request.POST if request.method == "POST" else request.GET
    chosen = source.get("step") or (run.error or {}).get("step") or (
        steps[0].step_id if steps else "")
    old_input = next((s.input for s in steps if s.step_id == chosen), {})
    form = {"step": chosen, "version": source.get("version") or "pinned",
            "repeat_effects": source.get("repeat_effects") == "on",
            "input": source.get("input") if request.method == "POST" else pretty_json(old_input)}
    plan, error = None, None
    if request.method == "POST":
        try:
            edited = _parsed_input(form["input"], old_input)
            options = {"from_step": chosen, "input": edited, "version": form["version"],
                       "repeat_effects": form["repeat_effects"]}
            if "start" in request.POST:
                new = run_rerun(run=run, user=request.user, **options)
                messages.success(request, f"Re-running from “{chosen}”: this is the new attempt.")
                return redirect("admin:automation_run_change", new.pk)
            plan = rerun_plan(run=run, **options).as_json()
        except AutomationError as exc:
            error = exc.message
    choices = _step_choices(run, steps)
    context = admin_context(request, model_admin, f"Re-run {str(run.pk)[:8]}", run=run, form=form,
                            plan=plan, error=error, step_choices=choices, versions=VERSIONS)
    return TemplateResponse(request, "admin/automation/run/rerun.html", context)


def _parsed_input(text: str | None, old):
    """The textarea's JSON; unchanged text keeps the old input (not an edit)."""
    if text is None or text.strip() == pretty_json(old).strip():
        return UNSET
    try:
        return json.loads(text)
    except ValueError as exc:
        raise AutomationError(f"The input is not valid JSON: {exc}.") from None


def _step_choices(run: Run, steps: list[StepRun]) -> list[str]:
    from automation.store.graphs import graph_for

    return list(graph_for(run.version_id).steps) or [s.step_id for s in steps]


# -- the circuit breaker ----------------------------------------------------------------

def paused_banner(request) -> dict:
    """Template context: the processes paused by their breaker, for staff (every admin
    page shows them, templates/admin/base_site.html)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return {}
    if not request.path.startswith(reverse("admin:index")):
        return {}
    return {"ef_paused": list(breaker.paused_processes()[:5])}


@require_http_methods(["GET", "POST"])
def process_breaker_view(request, model_admin, object_id):
    require_perm(request, "automation.view_apiprocess", "automation.change_apiprocess")
    process = get_or_404(ApiProcess.objects.all(), object_id)
    if request.method == "POST":
        require_perm(request, "automation.change_apiprocess")
        if "limits" in request.POST:
            try:
                limits = json.loads(request.POST["limits"] or "{}")
                breaker.limits_set(process=process, limits=limits)
            except (ValueError, AutomationError) as exc:
                messages.error(request, getattr(exc, "message", None) or f"Not JSON: {exc}")
            else:
                messages.success(request, "Thresholds saved.")
            return redirect("admin:automation_apiprocess_breaker", process.pk)
        try:
            done = process_resume(process=process, held=request.POST.get("held", ""),
                                  user=request.user)
        except AutomationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Resumed: {done['continued']} held step(s) continued, "
                                      f"{done['released']} held run(s) released, "
                                      f"{done['discarded']} discarded.")
        return redirect("admin:automation_apiprocess_breaker", process.pk)
    state = breaker.breaker_of(process)
    held = HeldStart.objects.filter(process=process, status=HeldStart.Status.HELD)
    context = admin_context(
        request, model_admin, f"Circuit breaker · {process.name}", process=process, state=state,
        limits=breaker.limits_of(state), defaults=breaker.DEFAULTS, held_count=held.count(),
        overrides=json.dumps(state.limits if state else {}, indent=2),
        held=list(held.select_related("entity")[:20]),
        can_change=request.user.has_perm("automation.change_apiprocess"))
    return TemplateResponse(request, "admin/automation/apiprocess/breaker.html", context)
