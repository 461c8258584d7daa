"""The automation side of an entity's why-timeline (entities.timeline): runs started,
steps failed and retried, approvals requested and decided, webhooks delivered. Read
from the rows the engine keeps; registered at startup (automation/apps.py)."""

from urllib.parse import urlsplit

from django.db.models import Q
from django.utils.dateparse import parse_datetime

from automation.models import ApiClient, ApprovalRequest, Run, StepRun, WebhookDelivery
from automation.services.waits import waiting_text
from entities.models import Entity
from entities.timeline import Entry, Window, register_source


def register() -> None:
    register_source("runs", runs)
    register_source("steps", steps)
    register_source("approvals", approvals)
    register_source("webhooks", webhooks)


def runs(entity: Entity, window: Window) -> list[Entry]:
    if not window.wants("run", "step_retried"):
        return []
    rows = window.rows(Run.objects.filter(entity=entity)
                       .select_related("process", "event", "created_by"), "created_at")
    clients = _client_keys(rows)
    waits = _waiting_steps([run.pk for run in rows if run.status == Run.Status.WAITING])
    entries = []
    for run in rows:
        trigger = run.trigger or {}
        details = {"runId": str(run.pk), "process": run.process.slug, "status": run.status,
                   "trigger": {k: trigger[k] for k in ("type", "triggerId", "source")
                               if k in trigger},
                   "event": ({"id": run.event_id, "type": run.event.type}
                             if run.event is not None else None)}
        actor = _run_actor(run, clients)
        how = f"{trigger.get('type', '?')} trigger"
        if run.parent_run_id:  # a sub-process: which run's step started it
            details["parentRunId"] = str(run.parent_run_id)
            how = (f"sub-process of run {str(run.parent_run_id)[:8]}, "
                   f"step {trigger.get('parentStep', '?')}")
        now = run.status
        if waits.get(run.pk):  # a waiting run says what for (docs/user-guide/waits.md)
            details["waitingFor"] = waits[run.pk]
            now += " for " + "; ".join(f"{w['text']} (step {w['step']})" for w in waits[run.pk])
        if window.wants("run"):
            entries.append(Entry(
                at=run.created_at, key=f"run:{run.pk}", kind="run", actor=actor,
                summary=f"Started {run.process.slug} ({how}); now {now}", details=details))
        if trigger.get("rerunOf") and window.wants("step_retried"):
            # a retry or re-run is a new attempt linked to the old run (services/reruns.py)
            verb = "retried" if trigger.get("type") == "retry" else "re-run"
            entries.append(Entry(
                at=run.created_at, key=f"run:{run.pk}:rerun", kind="step_retried", actor=actor,
                summary=f"Step {trigger.get('fromStep')} {verb}",
                details={"runId": str(run.pk), "rerunOf": trigger["rerunOf"],
                         "step": trigger.get("fromStep"), "process": run.process.slug,
                         "version": trigger.get("version")}))
    return entries


def _waiting_steps(run_ids: list) -> dict:
    """run id -> what its waiting steps wait for: [{step, text, waitingFor?, childRunId?}]
    (one query for the window's waiting runs)."""
    found: dict = {}
    if not run_ids:
        return found
    for run_id, step_id, state in (StepRun.objects.filter(
            run_id__in=run_ids, status=StepRun.Status.WAITING).order_by("id")
            .values_list("run_id", "step_id", "state")):
        state = state if isinstance(state, dict) else {}
        text = waiting_text(state)
        if text is None:  # a loop or a join waits for its own steps: nothing to say here
            continue
        entry = {"step": step_id, "text": text}
        if isinstance(state.get("waitingFor"), dict):
            entry["waitingFor"] = state["waitingFor"]
        if state.get("childRun"):
            entry["childRunId"] = str(state["childRun"])
        found.setdefault(run_id, []).append(entry)
    return found


def _client_keys(rows: list[Run]) -> dict[str, str]:
    ids = {str(run.trigger.get("by", "")).removeprefix("client:") for run in rows
           if str((run.trigger or {}).get("by", "")).startswith("client:")}
    found = ApiClient.objects.filter(pk__in=[i for i in ids if i.isdigit()]
                                     ).values_list("pk", "key")
    return {str(pk): key for pk, key in found}


def _run_actor(run: Run, clients: dict[str, str]) -> str:
    """Who started it: the staff user or API client that asked, else whoever caused the
    event that triggered it, else the process itself (a schedule, a webhook)."""
    by = str((run.trigger or {}).get("by", ""))
    if by.startswith("client:"):
        return f"client:{clients.get(by.removeprefix('client:'), by.removeprefix('client:'))}"
    if run.created_by is not None:
        return f"user:{run.created_by.get_username()}"
    if run.event is not None and run.event.actor:
        return run.event.actor
    return f"process:{run.process.slug}"


def steps(entity: Entity, window: Window) -> list[Entry]:
    """Failed attempts (retried automatically or not) and final failures; a staff retry is
    a new run, listed by `runs`."""
    if not window.wants("step_failed"):
        return []
    rows = (StepRun.objects.filter(run__entity=entity)
            .filter(Q(status=StepRun.Status.FAILED) | Q(attempt__gt=1))
            .select_related("run__process").order_by("id"))
    entries = []
    for step_run in rows[:(window.limit + 50) * 4]:
        process = f"process:{step_run.run.process.slug}"
        base = {"step": step_run.step_id, "runId": str(step_run.run_id),
                "process": step_run.run.process.slug}
        key = f"step:{step_run.pk}"
        for n, log in enumerate(step_run.logs or ()):
            at = parse_datetime(log.get("at") or "") if isinstance(log, dict) else None
            if at is None:
                continue
            if log.get("event") == "attempt_failed":
                entries.append(Entry(
                    at=at, key=f"{key}:{n}", kind="step_failed", actor=process,
                    summary=f"Step {step_run.step_id} failed (attempt {log.get('attempt')}); "
                            "retrying",
                    details={**base, "attempt": log.get("attempt"), "error": log.get("error"),
                             "retrying": True}))
        if step_run.status == StepRun.Status.FAILED and step_run.finished_at:
            entries.append(Entry(
                at=step_run.finished_at, key=f"{key}:end", kind="step_failed", actor=process,
                summary=f"Step {step_run.step_id} failed",
                details={**base, "attempt": step_run.attempt,
                         "error": (step_run.error or {}).get("message"), "retrying": False}))
    if window.after is not None:
        entries = [entry for entry in entries if entry.at >= window.after]
    return entries


def approvals(entity: Entity, window: Window) -> list[Entry]:
    if not window.wants("approval_requested", "approval_decided"):
        return []
    rows = window.rows(ApprovalRequest.objects.filter(run__entity=entity)
                       .select_related("run__process", "step_run"), "created_at")
    entries = []
    for approval in rows:
        base = {"approvalId": approval.pk, "runId": str(approval.run_id),
                "step": approval.step_run.step_id}
        entries.append(Entry(
            at=approval.created_at, key=f"approval:{approval.pk}", kind="approval_requested",
            actor=f"process:{approval.run.process.slug}",
            summary=f"Approval requested from {', '.join(approval.approvers) or 'staff'}",
            details={**base, "approvers": approval.approvers, "status": approval.status}))
        for n, decision in enumerate(approval.decisions or ()):
            at = parse_datetime(decision.get("at") or "")
            if at is None:
                continue
            by = str(decision.get("decidedBy", ""))
            entries.append(Entry(
                at=at, key=f"approval:{approval.pk}:{n}", kind="approval_decided",
                actor=decision.get("actor") or f"user:{by}",
                summary=f"{'Approved' if decision.get('approved') else 'Rejected'} by {by}",
                details={**base, "approved": bool(decision.get("approved")),
                         "comment": decision.get("comment") or ""}))
    return entries


def webhooks(entity: Entity, window: Window) -> list[Entry]:
    if not window.wants("webhook"):
        return []
    run_ids = {str(pk): slug for pk, slug in
               Run.objects.filter(entity=entity).values_list("pk", "process__slug")}
    if not run_ids:
        return []
    rows = window.rows(WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.DELIVERED, payload__id__in=list(run_ids))
        .select_related("subscription"), "delivered_at")
    return [Entry(at=d.delivered_at, key=f"webhook:{d.pk}", kind="webhook",
                  actor=f"process:{run_ids.get(str(d.payload.get('id')), '')}",
                  summary=f"Webhook {d.event} delivered",
                  details={"event": d.event, "host": urlsplit(d.subscription.url).netloc,
                           "statusCode": d.last_status_code,
                           "runId": d.payload.get("id")})
            for d in rows]
