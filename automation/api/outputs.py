"""Response shapes shared by several endpoints (camelCase, as docs/rest-api.md shows them)."""

from rest_framework import serializers

from automation.api.schema import AnyJsonField, ObjectField, StepsField, TriggersField
from automation.definitions.webhook_config import redact_triggers


class RunErrorSerializer(serializers.Serializer):
    message = serializers.CharField()
    step = serializers.CharField(allow_null=True, default=None)
    code = serializers.CharField(allow_null=True, default=None)

    class Meta:
        ref_name = "RunError"


class ExecutionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    priority = serializers.CharField(help_text="high, normal or low: which runs' steps "
                                               "workers take first.")
    result = AnyJsonField(allow_null=True)
    error = RunErrorSerializer(allow_null=True)
    workflowDefinitionId = serializers.CharField(source="process.slug")
    version = serializers.IntegerField(source="version.number")
    caseId = serializers.UUIDField(source="entity_id", allow_null=True,
                                   help_text="The run's entity (a case in the case flow).")
    entityId = serializers.UUIDField(source="entity_id", allow_null=True)
    batchId = serializers.UUIDField(source="batch_id", allow_null=True)
    trigger = ObjectField()
    rerunOf = serializers.UUIDField(source="rerun_of_id", allow_null=True,
                                    help_text="The run this one re-runs (a retry or a re-run).")
    reruns = serializers.ListField(child=serializers.UUIDField(), source="rerun_ids",
                                   help_text="The re-runs of this run, oldest first.")
    parentExecutionId = serializers.UUIDField(
        source="parent_run_id", allow_null=True,
        help_text="For a sub-process run: the execution whose `process` step started it.")
    pendingReason = serializers.CharField(
        source="pending_reason", allow_null=True,
        help_text="Why a pending run waits: its process's concurrency limit is reached "
                  "(null once it may start). docs: Concurrency, debounce and dedupe.")
    concurrencyKey = serializers.CharField(
        source="concurrency_key", allow_null=True,
        help_text="The key the process's concurrency limit counts this run under.")
    createdAt = serializers.DateTimeField(source="created_at")
    startedAt = serializers.DateTimeField(source="started_at", allow_null=True)
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)

    class Meta:
        ref_name = "Execution"


class StepRunSerializer(serializers.Serializer):
    id = serializers.CharField(source="step_id", help_text="The step's id in the definition.")
    type = serializers.CharField(source="step_type")
    status = serializers.CharField()
    priority = serializers.CharField(help_text="Its run's: the queue its doorbells go to.")
    attempts = serializers.IntegerField(source="attempt")
    input = AnyJsonField(allow_null=True)
    output = AnyJsonField(allow_null=True)
    error = AnyJsonField(allow_null=True)
    startedAt = serializers.DateTimeField(source="started_at", allow_null=True)
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)
    durationMs = serializers.IntegerField(source="duration_ms", allow_null=True)
    index = serializers.IntegerField(allow_null=True, help_text="Loop iteration, if any.")
    scope = serializers.CharField(help_text="Loop iteration path; empty outside loops.")
    parent = serializers.CharField(source="parent.step_id", default=None, allow_null=True,
                                   help_text="For an agent's tool call: the agent step's id.")
    childExecutionId = serializers.SerializerMethodField(
        help_text="A `process` step's sub-process execution; null for other steps.")
    usage = serializers.SerializerMethodField(
        help_text="An agent step's token usage and cost: {promptTokens, completionTokens, "
                  "totalTokens, cost}; null for other steps.")
    logs = serializers.ListField(child=ObjectField(), required=False,
                                 help_text="Only with ?expand=logs: the step's log lines, "
                                           "each {message, ...}.")
    waitingFor = serializers.SerializerMethodField(
        help_text="While a wait or waitForEvent step waits: {kind: time|event, dueAt, and "
                  "for / until, or event and condition}; null otherwise.")

    class Meta:
        ref_name = "StepRun"

    def get_waitingFor(self, step) -> dict | None:  # noqa: N802 - the API's key
        state = step.state if isinstance(step.state, dict) else {}
        return state.get("waitingFor") if step.status == "waiting" else None

    def get_childExecutionId(self, step) -> str | None:  # noqa: N802 - the field's name
        return (step.state or {}).get("childRun") if isinstance(step.state, dict) else None

    def get_usage(self, step) -> dict | None:
        agent = (step.state or {}).get("agent") if isinstance(step.state, dict) else None
        if not isinstance(agent, dict):
            return None
        return {**(agent.get("usage") or {}), "cost": agent.get("cost", "0")}

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not self.context.get("logs"):
            data.pop("logs", None)
        return data


class ExecutionWithStepsSerializer(ExecutionSerializer):
    steps = StepRunSerializer(many=True, required=False, source="expanded_steps",
                              help_text="Only with ?expand=steps.")

    class Meta:
        ref_name = "ExecutionWithSteps"


class EntitySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField(source="entity_type.key")
    reference = serializers.CharField()
    status = serializers.CharField()
    data = ObjectField()
    version = serializers.IntegerField()
    unmetRequirements = AnyJsonField(source="unmet_requirements")
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        ref_name = "Entity"


class CaseSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    reference = serializers.CharField()
    status = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")
    firstName = serializers.CharField(source="data.firstName", default=None, allow_null=True)
    lastName = serializers.CharField(source="data.lastName", default=None, allow_null=True)
    personalNumber = serializers.CharField(source="data.personalNumber", default=None,
                                           allow_null=True)
    email = serializers.CharField(source="data.email", default=None, allow_null=True)
    phone = serializers.CharField(source="data.phone", default=None, allow_null=True)
    companyName = serializers.CharField(source="data.companyName", default=None, allow_null=True)
    companyNumber = serializers.CharField(source="data.companyNumber", default=None,
                                          allow_null=True)
    companyAddress = serializers.CharField(source="data.companyAddress", default=None,
                                           allow_null=True)

    class Meta:
        ref_name = "Case"


class RedactedTriggersField(TriggersField):
    """Triggers as stored, less the secret and token of webhook triggers: credentials
    are written, never read back (a PUT without them keeps the stored ones)."""

    def to_representation(self, value):
        return super().to_representation(redact_triggers(value))


class ProcessSerializer(serializers.Serializer):
    id = serializers.CharField(source="slug")
    name = serializers.CharField()
    description = serializers.CharField()
    entityType = serializers.CharField(source="entity_type.key", default=None, allow_null=True)
    enabled = serializers.BooleanField()
    version = serializers.IntegerField(source="current_version.number", default=None,
                                       allow_null=True)
    steps = StepsField(source="definition.steps")
    triggers = RedactedTriggersField(source="definition.triggers")
    priority = serializers.CharField(source="definition.priority", default="normal",
                                     help_text="high, normal or low: its runs' priority "
                                               "unless a trigger or batch sets one.")
    paused = serializers.SerializerMethodField(
        help_text="Paused (by its circuit breaker or a person): new starts are held and "
                  "running runs stop at their next step until it is resumed.")
    metadata = ObjectField()
    timezone = serializers.CharField(source="definition.timezone", default=None, allow_null=True,
                                     help_text="IANA time zone of the process (wait steps).")
    parametersSchema = ObjectField(source="parameters_schema", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        ref_name = "WorkflowDefinition"

    def get_paused(self, process) -> bool:
        breaker = getattr(process, "breaker", None)  # none: never paused
        return bool(breaker is not None and breaker.paused)


class ExecutionIdSerializer(serializers.Serializer):
    executionId = serializers.UUIDField()

    class Meta:
        ref_name = "ExecutionId"


class ExecutionResultSerializer(serializers.Serializer):
    """A synchronous reply (`?wait=`): the run ended while the request waited."""

    executionId = serializers.UUIDField(source="pk")
    status = serializers.ChoiceField(choices=["completed", "failed", "cancelled"])
    result = AnyJsonField(allow_null=True, help_text="The run's result (null unless completed).")
    error = RunErrorSerializer(allow_null=True, help_text="Why the run failed (null otherwise).")

    class Meta:
        ref_name = "ExecutionResult"
