"""The run page (step timeline with Response / Errors / Logs per step), its Cancel and
Retry buttons, and the small status endpoint that the modal and the page poll."""

import json

from django.conf import settings
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from automation.exceptions import AutomationError
from automation.models import Run, StepRun
from automation.services.runs import run_cancel, run_retry
from automation.services.waits import waiting_text
from automation.views.common import admin_context, get_or_404, require_perm
from automation.views.present import between, ms, pretty_json

TIMELINE_LIMIT = 500
TRACEBACK_LOG = "traceback (last frames)"


def log_line(entry) -> dict:
    if not isinstance(entry, dict):
        return {"message": str(entry), "data": ""}
    data = {k: v for k, v in entry.items() if k != "message"}
    if set(data) == {"data"}:
        data = data["data"]
    return {
        "message": str(entry.get("message", "")),
        "data": json.dumps(data, ensure_ascii=False, default=str) if data else "",
    }


def traceback_frames(step: StepRun) -> list[str]:
    """The last frames the engine logged, with paths shown relative to the project."""
    root = f"{settings.BASE_DIR}/"
    for entry in step.logs or []:
        if isinstance(entry, dict) and entry.get("message") == TRACEBACK_LOG:
            frames = (entry.get("data") or {}).get("frames") or entry.get("frames") or []
            return [str(frame).removeprefix(root) for frame in frames]
    return []


def agent_usage(step: StepRun) -> dict | None:
    """Token usage and cost of an agent step (engine/agents.py keeps them in its state)."""
    agent = (step.state or {}).get("agent") if isinstance(step.state, dict) else None
    if not isinstance(agent, dict):
        return None
    usage = agent.get("usage") or {}
    return {"prompt": usage.get("promptTokens", 0), "completion": usage.get("completionTokens", 0),
            "total": usage.get("totalTokens", 0), "cost": agent.get("cost", "0"),
            "turns": agent.get("iterations", 0), "tool_calls": agent.get("toolCalls", 0),
            "agent": agent.get("agent"), "version": agent.get("agentVersion")}


def waiting_for(step: StepRun) -> str | None:
    """What a waiting wait / waitForEvent step waits for, in words (docs/user-guide/waits.md);
    a sub-process step's child run has a line of its own on the page."""
    state = step.state if isinstance(step.state, dict) else {}
    wait = state.get("waitingFor")
    if step.status != StepRun.Status.WAITING or not isinstance(wait, dict):
        return None
    return waiting_text({"waitingFor": wait})


def step_view(step: StepRun, parents: dict | None = None) -> dict:
    return {
        "obj": step,
        "parent": (parents or {}).get(step.parent_id),
        "child_run": (step.state or {}).get("childRun") if isinstance(step.state, dict) else None,
        "usage": agent_usage(step),
        "waiting_for": waiting_for(step),
        "dom_id": f"step-{step.pk}",
        "duration": ms(step.duration_ms)
        if step.duration_ms is not None
        else between(step.started_at, step.finished_at if step.started_at else None),
        "input": pretty_json(step.input),
        "output": pretty_json(step.output),
        "error": step.error
        if isinstance(step.error, dict)
        else ({"message": str(step.error)} if step.error else None),
        "traceback": traceback_frames(step),
        "ledger": any(isinstance(e, dict) and (e.get("data") or {}).get("ledger") == "served"
                      for e in step.logs or []),
        "kept": any(isinstance(e, dict) and str(e.get("message", "")).startswith("kept from run")
                    for e in step.logs or []),
        "logs": [
            log_line(e)
            for e in step.logs or []
            if not (isinstance(e, dict) and e.get("message") == TRACEBACK_LOG)
        ],
    }


def run_page(request, model_admin, object_id):
    require_perm(request, "automation.view_run", "automation.change_run")
    run = get_or_404(
        Run.objects.select_related(
            "process", "version", "entity__entity_type", "batch", "created_by"
        ),
        object_id,
    )
    steps = list(run.steps.order_by("id")[: TIMELINE_LIMIT + 1])
    parents = {s.pk: s.step_id for s in steps}
    views = [step_view(s, parents) for s in steps[:TIMELINE_LIMIT]]
    focus = next(
        (v for v in views if v["obj"].status == StepRun.Status.FAILED), views[-1] if views else None
    )
    can_change = request.user.has_perm("automation.change_run")
    context = admin_context(
        request,
        model_admin,
        f"Run {str(run.pk)[:8]}",
        run=run,
        steps=views,
        focus=focus,
        truncated=len(steps) > TIMELINE_LIMIT,
        took=between(run.started_at, run.finished_at),
        can_cancel=can_change and not run.is_finished,
        can_retry=can_change and run.status == Run.Status.FAILED,
        can_rerun=can_change and run.is_finished,
        rerun_of=run.rerun_of_id,
        reruns=list(run.reruns.order_by("created_at").values_list("pk", "status")),
        parent_run=run.parent_run_id,
        subruns=list(run.subruns.order_by("created_at").values_list(
            "pk", "status", "process__slug", "parent_step_run__step_id")),
        served_steps=sum(1 for v in views if v["ledger"]),
        result_json=pretty_json(run.result),
        input_json=pretty_json(run.input),
        parameters_json=pretty_json(run.parameters),
        trigger_json=pretty_json(run.trigger),
        status_url=reverse("admin:automation_run_status", args=[run.pk]),
        approval=run.approvals.filter(status="pending").first(),
        waits=[(v["obj"].step_id, v["waiting_for"]) for v in views if v["waiting_for"]],
    )
    return TemplateResponse(request, "admin/automation/run/page.html", context)


@require_POST
def run_cancel_view(request, model_admin, object_id):
    return _act(request, object_id, run_cancel, "The run was cancelled.")


@require_POST
def run_retry_view(request, model_admin, object_id):
    """Retry from the failed step on the pinned or the latest version: a new attempt,
    whose page opens (services.reruns)."""
    require_perm(request, "automation.change_run")
    run = get_or_404(Run.objects.all(), object_id)
    version = request.POST.get("version") or "pinned"
    try:
        new = run_retry(run=run, version=version, user=request.user)
    except AutomationError as exc:
        messages.error(request, exc.message)
        return redirect("admin:automation_run_change", run.pk)
    new.refresh_from_db(fields=["status"])
    messages.success(request, f"Retrying from the failed step ({version} version) as a new "
                              f"attempt. Status now: {new.status}.")
    return redirect("admin:automation_run_change", new.pk)


def _act(request, object_id, service, done: str):
    require_perm(request, "automation.change_run")
    run = get_or_404(Run.objects.all(), object_id)
    try:
        run = service(run=run)
    except AutomationError as exc:
        messages.error(request, exc.message)
    else:
        run.refresh_from_db(fields=["status"])
        messages.success(request, f"{done} Status now: {run.status}.")
    return redirect("admin:automation_run_change", run.pk)


@require_GET
def run_status(request, model_admin, object_id):
    require_perm(request, "automation.view_run", "automation.change_run", "automation.add_run")
    run = get_or_404(Run.objects.only("id", "status", "error", "finished_at", "result"), object_id)
    current = run.steps.order_by("-id").values("step_id", "status").first()
    return JsonResponse(
        {
            "id": str(run.pk),
            "status": run.status,
            "finished": run.is_finished,
            "error": run.error,
            "steps": run.steps.count(),
            "current": {"step": current["step_id"], "status": current["status"]}
            if current
            else None,
            "finishedAt": run.finished_at.isoformat() if run.finished_at else None,
            "url": reverse("admin:automation_run_change", args=[run.pk]),
        }
    )
