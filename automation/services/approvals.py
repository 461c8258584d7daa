"""Human tasks (docs/user-guide/human-tasks.md): approval requests of `human` steps, their
decisions with form data, quorum, reminders and escalation, one-click links, and the
binding of a decision to the entity data the approver saw."""

import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from automation.definitions.steps.outcome import Outcome
from automation.exceptions import ApprovalNotAllowedError, AutomationError, RunStateError
from automation.models import ApprovalLinkUse, ApprovalRequest
from automation.services import notifications
from automation.services.approval_forms import form_clean
from automation.store import get_store
from automation.store.graphs import graph_for
from entities.actors import current_actor

LINK_SALT = "entityflow.approval-link"
DEFAULT_LINK_EXPIRY_MS = 48 * 3_600_000


class ApprovalChangedError(RunStateError):
    """The data the decision was made on is no longer the request's: review it again."""

    code = "approval_changed"


class LinkRefusedError(AutomationError):
    """A one-click link that is not (or no longer) good; nothing was changed."""

    code = "link_refused"
    http_status = 410


# -- who may decide ----------------------------------------------------------------------

def approver_matches(approval: ApprovalRequest, *, name: str, user=None) -> bool:
    """`name` (username or email) or `user` is one of the approvers, directly or by group."""
    names = {
        n.lower() for n in [name, getattr(user, "username", ""), getattr(user, "email", "")] if n
    }
    groups = (
        set(user.groups.values_list("name", flat=True)) if user is not None and user.pk else set()
    )
    for entry in approval.approvers:
        entry_l = entry.lower()
        if entry_l in names or (entry_l.startswith("group:") and entry[6:] in groups):
            return True
    return False


def approver_user(name: str):
    """The Django user a username or email belongs to, if any (so group entries match
    and one person is one person under either name)."""
    return get_user_model().objects.filter(Q(username__iexact=name) | Q(email__iexact=name)).first()


def person_key(name: str, user=None) -> str:
    """Who decided, as one key per person: a user whatever name they used, else the name."""
    return f"user:{user.pk}" if user is not None and user.pk else f"name:{name.lower()}"


def approvals_for_user(user, *, status: str = ApprovalRequest.Status.PENDING) -> list:
    rows = ApprovalRequest.objects.filter(status=status).select_related(
        "run__process", "step_run", "run__entity").order_by("-created_at", "-id")
    return [a for a in rows if approver_matches(a, name=user.username, user=user)]


def recipients(entries: list) -> list[tuple[str, str]]:
    """(name they decide under, email) for approver entries: a username is mailed at the
    user's email, an email as it is, a group at each member's email."""
    users = get_user_model().objects
    found: dict[str, tuple[str, str]] = {}
    for entry in entries:
        entry = str(entry)
        if entry.lower().startswith("group:"):
            for user in users.filter(groups__name=entry[6:], is_active=True).exclude(email=""):
                found.setdefault(user.email.lower(), (user.username, user.email))
        elif "@" in entry:
            found.setdefault(entry.lower(), (entry, entry))
        else:
            user = users.filter(username__iexact=entry).exclude(email="").first()
            if user is not None:
                found.setdefault(user.email.lower(), (entry, user.email))
    return list(found.values())


# -- opening a request -------------------------------------------------------------------

def covered(data: dict | None, fields: list | None) -> dict:
    """The entity fields a request covers, as they are now."""
    data = data or {}
    if fields is None:
        return dict(data)
    return {name: data.get(name) for name in fields}


def approval_opened(approval: ApprovalRequest) -> None:
    """The store's hook when a human step starts waiting (in the transaction that opened
    the request): fill in what the step's config asks for, then notify."""
    config = graph_for(approval.run.version_id).steps[approval.step_run.step_id].config
    now = approval.created_at or timezone.now()
    approval.form = config.get("form") or None
    approval.fields = config.get("fields")
    approval.reject_quorum = config.get("rejectQuorum") or 1
    approval.escalate_to = list(config.get("escalateTo") or [])
    approval.remind_at = _after(now, config.get("remindAfter"))
    approval.escalate_at = _after(now, config.get("escalateAfter"))
    approval.link_expiry_seconds = (config.get("linkExpiry") or DEFAULT_LINK_EXPIRY_MS) // 1000
    entity = approval.run.entity
    approval.snapshot = covered(entity.data if entity else {}, approval.fields)
    approval.save()
    _watch(approval.run.entity_id)
    _announce(approval, "approval.requested")


def _after(start, ms):
    return start + timedelta(milliseconds=ms) if ms else None


def _announce(approval: ApprovalRequest, event: str, *, to: list | None = None) -> None:
    """The webhook (same transaction) and the emails (after commit) for one event."""
    notifications.approval_event(approval, event)
    people = recipients(approval.approvers if to is None else to)
    transaction.on_commit(lambda: _mail(approval.pk, event, people), robust=True)


# -- version-bound decisions ---------------------------------------------------------------

def _reissue_if_changed(approval: ApprovalRequest, data: dict) -> bool:
    now_covered = covered(data, approval.fields)
    if now_covered == approval.snapshot:
        return False
    before = approval.snapshot or {}
    changes = [{"field": name, "before": before.get(name), "after": now_covered.get(name)}
               for name in sorted(set(before) | set(now_covered))
               if before.get(name) != now_covered.get(name)]
    approval.history = [*approval.history, {
        "version": approval.version, "snapshot": before, "decisions": approval.decisions,
        "invalidatedAt": timezone.now().isoformat(), "changes": changes}]
    approval.version += 1
    approval.decisions = []
    approval.snapshot = now_covered
    approval.changes = changes
    approval.save(update_fields=["history", "version", "decisions", "snapshot", "changes"])
    names = ", ".join(c["field"] for c in changes)
    get_store().log_waiting(approval.step_run_id,
                            f"request re-issued as version {approval.version}: {names} changed; "
                            f"earlier decisions no longer count", event="approval.reissued")
    _announce(approval, "approval.requested")
    return True


def entity_changed(event) -> None:
    """Outbox subscriber: an entity was saved; re-issue its pending requests whose
    covered fields changed (entities never import automation: docs/architecture.md)."""
    snapshot = event.snapshot or {}
    for approval in ApprovalRequest.objects.select_for_update(of=("self",)).filter(
            status=ApprovalRequest.Status.PENDING, run__entity_id=event.entity_id
    ).select_related("run__process", "step_run"):
        _reissue_if_changed(approval, snapshot.get("data") or {})


# Entities with a pending request, as this process last read them: asked on every entity
# save (inside its transaction), so a save costs no query while nothing waits on people.
# Read again at most every ENTITYFLOW_APPROVAL_WATCH_SECONDS (1 s); a request this
# process opens is added at once.
# A request opened meanwhile by another process is missed by this path for at most that
# long, and the decision still compares the data first (approval_decide), so no
# decision applies to data its approver did not see.
WATCH_LIMIT = 5000  # more entities than this: ask the database on each save instead
_watched: dict = {"ids": None, "read_at": float("-inf")}


def _watched_entities() -> set | None:
    now = time.monotonic()
    if now - _watched["read_at"] >= getattr(settings, "ENTITYFLOW_APPROVAL_WATCH_SECONDS", 1.0):
        ids = list(ApprovalRequest.objects.filter(
            status=ApprovalRequest.Status.PENDING, run__entity_id__isnull=False
        ).values_list("run__entity_id", flat=True).distinct()[:WATCH_LIMIT + 1])
        _watched["ids"] = set(ids) if len(ids) <= WATCH_LIMIT else None
        _watched["read_at"] = now
    return _watched["ids"]


def _watch(entity_id) -> None:
    if entity_id is not None and _watched["ids"] is not None:
        _watched["ids"].add(entity_id)


def entity_change_matters(event) -> bool:
    if not event.entity_id or event.type not in ("entity.updated", "entity.status_changed"):
        return False
    watched = _watched_entities()
    if watched is not None:
        return event.entity_id in watched
    return ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING,
                                          run__entity_id=event.entity_id).exists()


# -- deciding ------------------------------------------------------------------------------

def approval_decide(*, approval: ApprovalRequest, approved: bool, comment: str = "",
                    decided_by: str, user=None, data=None, version: int | None = None,
                    link_nonce: str | None = None) -> ApprovalRequest:
    """Record one decision; `requiredApprovals` distinct people approving, or
    `rejectQuorum` rejecting, finish the step. `version`: the request version the
    decider saw (the inbox and links send it); a decision never applies to another."""
    with transaction.atomic():
        approval = ApprovalRequest.objects.select_for_update(of=("self",)).select_related(
            "run__entity", "run__process", "step_run").get(pk=approval.pk)
        if approval.status != ApprovalRequest.Status.PENDING:
            raise RunStateError(f"This approval is already {approval.status}.")
        # compared under the lock, so a change whose event is not handled yet cannot
        # slip through: the re-issue commits, and the decision is refused after it
        entity = approval.run.entity
        reissued = entity is not None and _reissue_if_changed(approval, entity.data)
        if not reissued:
            return _record(approval, approved=approved, comment=comment, decided_by=decided_by,
                           user=user, data=data, version=version, link_nonce=link_nonce)
    raise ApprovalChangedError("The data this request covers changed; it was re-issued. "
                               "Review the new version and decide again.")


def _record(approval: ApprovalRequest, *, approved: bool, comment: str, decided_by: str, user,
            data, version: int | None, link_nonce: str | None) -> ApprovalRequest:
    """The decision on a locked, pending, current request."""
    if version is not None and version != approval.version:
        raise ApprovalChangedError(
            f"You decided on version {version}, but the request is now version "
            f"{approval.version}: its data changed. Review it again.")
    if not approver_matches(approval, name=decided_by, user=user):
        raise ApprovalNotAllowedError(f"'{decided_by}' is not one of this step's approvers.")
    person = person_key(decided_by, user)
    if any(d.get("person") == person for d in approval.decisions):
        raise RunStateError(f"'{decided_by}' has already decided.")
    # the form is what an approval enters; a rejection says why in its comment
    data = form_clean(approval.form, data if data is not None else {}) if approved else {}
    if link_nonce:
        try:
            with transaction.atomic():
                ApprovalLinkUse.objects.create(nonce=link_nonce, approval=approval,
                                               used_by=decided_by)
        except IntegrityError:
            raise LinkRefusedError("This link was already used.") from None
    now = timezone.now()
    approval.decisions = [*approval.decisions, {
        "approved": approved, "comment": comment, "data": data, "decidedBy": decided_by,
        "person": person, "at": now.isoformat(), "version": approval.version,
        "actor": current_actor()}]  # who acted: a client may decide for a user
    approvals = [d for d in approval.decisions if d["approved"]]
    rejections = [d for d in approval.decisions if not d["approved"]]
    if len(approvals) < approval.required_approvals and len(rejections) < approval.reject_quorum:
        approval.save(update_fields=["decisions"])
        get_store().log_waiting(approval.step_run_id,
                                f"{'approved' if approved else 'rejected'} by {decided_by}; "
                                f"{len(approvals)} of {approval.required_approvals} approvals")
        return approval
    final = len(approvals) >= approval.required_approvals
    approval.status = ApprovalRequest.Status.APPROVED if final else ApprovalRequest.Status.REJECTED
    approval.decided_at = now
    approval.save(update_fields=["decisions", "status", "decided_at"])
    merged = {}
    for decision in (approvals if final else rejections):
        merged.update(decision.get("data") or {})
    output = {"approved": final, "comment": comment, "data": merged,
              "decidedBy": decided_by, "decidedAt": now.isoformat(),
              "comments": [d["comment"] for d in approval.decisions if d["comment"]],
              "decisions": [{k: d[k] for k in ("approved", "comment", "data", "decidedBy", "at")}
                            for d in approval.decisions]}
    get_store().resume(approval.step_run_id, Outcome(
        "completed", output=output,
        logs=[{"message": f"{'approved' if final else 'rejected'} by {decided_by}"}]))
    return approval


# -- deadlines, reminders, escalation (the sweeper calls these: docs/reliability.md) -------

def approvals_expire(now=None) -> int:
    """Time out pending approvals past their deadline: onTimeout, else the step fails."""
    now = now or timezone.now()
    expired = 0
    for approval in ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING,
                                                   deadline__lt=now).select_related("run"):
        with transaction.atomic():
            if not ApprovalRequest.objects.filter(
                pk=approval.pk, status=ApprovalRequest.Status.PENDING
            ).update(status=ApprovalRequest.Status.TIMED_OUT):
                continue
            step = graph_for(approval.run.version_id).steps[approval.step_run.step_id]
            on_timeout = step.config.get("onTimeout")
            log = [{"message": "approval timed out"}]
            outcome = (
                Outcome(
                    "completed",
                    output={
                        "approved": False,
                        "timedOut": True,
                        "comment": "",
                        "data": {},
                        "decidedBy": None,
                        "decidedAt": None,
                        "comments": [],
                        "decisions": [],
                    },
                    targets=[on_timeout],
                    logs=log,
                )
                if on_timeout
                else Outcome.failed(
                    "The approval timed out with no decision.", code="approval_timeout", logs=log
                )
            )
            get_store().resume(approval.step_run_id, outcome)
            expired += 1
    return expired


def approvals_nudge(now=None) -> dict:
    """Send the reminders and escalations that are due, each once. Driven by the
    sweeper's schedule, so a restart loses none: the due time is in the row."""
    now = now or timezone.now()
    done = {"reminded": 0, "escalated": 0}
    pending = ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING)
    due = pending.filter(remind_at__lte=now, reminded_at__isnull=True)
    for pk in due.values_list("pk", flat=True):
        with transaction.atomic():
            approval = _due(pk, "reminded_at", now)
            if approval is None:
                continue
            get_store().log_waiting(approval.step_run_id,
                                    f"reminder sent to {', '.join(approval.approvers)}",
                                    event="approval.reminded")
            _announce(approval, "approval.reminded")
            done["reminded"] += 1
    due = pending.filter(escalate_at__lte=now, escalated_at__isnull=True)
    for pk in due.values_list("pk", flat=True):
        with transaction.atomic():
            approval = _due(pk, "escalated_at", now)
            if approval is None:
                continue
            added = [e for e in approval.escalate_to if e not in approval.approvers]
            approval.approvers = [*approval.approvers, *added]
            approval.save(update_fields=["approvers"])
            get_store().log_waiting(approval.step_run_id,
                                    f"escalated to {', '.join(approval.escalate_to) or 'nobody'}",
                                    event="approval.escalated")
            _announce(approval, "approval.escalated", to=approval.escalate_to)
            done["escalated"] += 1
    return done


def _due(pk: int, stamp: str, now) -> ApprovalRequest | None:
    approval = ApprovalRequest.objects.select_for_update(of=("self",)).select_related(
        "run__process", "step_run").get(pk=pk)
    if approval.status != ApprovalRequest.Status.PENDING or getattr(approval, stamp):
        return None
    setattr(approval, stamp, now)
    approval.save(update_fields=[stamp])
    return approval


# -- one-click links -------------------------------------------------------------------------

def link_token(approval: ApprovalRequest, name: str, nonce: str, decision: str) -> str:
    """A signed link for one person and one version of the request. The approve and the
    reject link of one email share their nonce, so using either uses both."""
    expires = int(time.time()) + approval.link_expiry_seconds
    return signing.dumps({"a": approval.pk, "v": approval.version, "p": name, "n": nonce,
                          "d": decision, "e": expires}, salt=LINK_SALT, compress=True)


def link_open(token: str, *, now: float | None = None) -> tuple[ApprovalRequest, dict]:
    """The request a link is for and what it says; LinkRefusedError when it must not be
    used (bad signature, expired, used, outdated, decided)."""
    try:
        claims = signing.loads(token, salt=LINK_SALT)
    except signing.BadSignature:
        raise LinkRefusedError("This link is not valid.") from None
    if (now or time.time()) > claims["e"]:
        raise LinkRefusedError("This link has expired. Decide in the approvals inbox instead.")
    approval = ApprovalRequest.objects.select_related("run__process", "run__entity", "step_run"
                                                      ).filter(pk=claims["a"]).first()
    if approval is None:
        raise LinkRefusedError("This request no longer exists.")
    if ApprovalLinkUse.objects.filter(nonce=claims["n"]).exists():
        raise LinkRefusedError("This link was already used.")
    if approval.status != ApprovalRequest.Status.PENDING:
        raise LinkRefusedError(f"This request is already {approval.status}.")
    if claims["v"] != approval.version:
        raise LinkRefusedError("The data of this request changed after this link was sent; "
                               "it was re-issued and a new email is on its way.")
    return approval, claims


def link_decide(token: str, *, comment: str = "", data=None) -> ApprovalRequest:
    approval, claims = link_open(token)
    return approval_decide(approval=approval, approved=claims["d"] == "approve",
                           comment=comment, decided_by=claims["p"], user=approver_user(claims["p"]),
                           data=data, version=claims["v"], link_nonce=claims["n"])


def _mail(approval_id: int, event: str, people: list[tuple[str, str]]) -> None:
    from django.core.mail import send_mail

    approval = ApprovalRequest.objects.select_related("run__process", "run__entity", "step_run"
                                                      ).filter(pk=approval_id).first()
    if approval is None or approval.status != ApprovalRequest.Status.PENDING:
        return
    base = getattr(settings, "ENTITYFLOW_PUBLIC_URL", "http://localhost:8000").rstrip("/")
    lead = {"approval.requested": "Your decision is needed",
            "approval.reminded": "Reminder: your decision is still needed",
            "approval.escalated": "Escalated to you: a decision is overdue"}[event]
    what = f"{approval.run.process.name} · {approval.step_run.step_id}"
    entity = approval.run.entity
    for name, email in people:
        nonce = secrets.token_urlsafe(16)
        links = {d: base + reverse("approval-link", args=[link_token(approval, name, nonce, d)])
                 for d in ("approve", "reject")}
        lines = [f"{lead}: {what}", ""]
        if entity is not None:
            lines.append(f"Entity: {entity.reference}")
        lines += [f"Request version {approval.version}"]
        for change in approval.changes:
            lines.append(f"Changed: {change['field']}: {change['before']!r} -> {change['after']!r}")
        lines += ["", f"Approve: {links['approve']}", f"Reject: {links['reject']}", "",
                  f"The links work once and expire in {approval.link_expiry_seconds // 3600} h."]
        send_mail(f"{lead}: {what}", "\n".join(lines), None, [email], fail_silently=True)
