"""System checks for settings that trials showed to matter (docs/operating.md)."""

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def queue_settings_check(app_configs, **kwargs):
    q = settings.Q_CLUSTER
    problems = []
    if not q.get("timeout"):
        problems.append(Error("Q_CLUSTER['timeout'] must be set.", id="entityflow.E001"))
    elif q.get("retry", 60) <= q["timeout"]:
        problems.append(Error(
            "Q_CLUSTER['retry'] must be well above 'timeout': the ORM broker redelivers a task "
            "after 'retry' seconds, so a step still running then would be delivered twice.",
            id="entityflow.E002"))
    lease = getattr(settings, "ENTITYFLOW_STEP_LEASE_SECONDS", 0)
    if q.get("timeout") and lease <= q["timeout"]:
        problems.append(Warning(
            "ENTITYFLOW_STEP_LEASE_SECONDS should exceed Q_CLUSTER['timeout'] so the sweeper "
            "does not take back a step that is still running.", id="entityflow.W001"))
    return problems
