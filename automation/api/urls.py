"""Everything under /api/ (docs/rest-api.md). Paths, verbs and keys are what external users
already send: do not rename them."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from automation.api import (
    agent_apis,
    approval_apis,
    auth_apis,
    batch_apis,
    case_apis,
    definition_apis,
    entity_apis,
    event_apis,
    explain_apis,
    function_apis,
    rerun_apis,
    run_apis,
    webhook_apis,
)
from automation.api import pause_apis as pauses
from automation.api.base import NotFoundApi, methods

app_name = "api"

definitions = definition_apis
urlpatterns = [
    # First: the busiest endpoint (docs/performance.md), so its requests are not tried
    # against twenty patterns first. No other pattern matches its addresses but the
    # catch-all, which stays last, so the order changes no route.
    path("workflow-definitions/<slug:id>/trigger", definitions.DefinitionTriggerApi.as_view(),
         name="definition-trigger"),
    path("auth/authorize", auth_apis.AuthAuthorizeApi.as_view(), name="auth-authorize"),
    path("auth/refresh", auth_apis.AuthRefreshApi.as_view(), name="auth-refresh"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    # Case flow
    path("cases", methods(case_apis.CaseListApi, case_apis.CaseCreateApi), name="case-create"),
    path("cases/<uuid:id>", case_apis.CaseDetailApi.as_view(), name="case-detail"),
    path("parameters", methods(case_apis.ParametersListApi, case_apis.ParametersCreateApi),
         name="parameters-create"),
    path("parameters/<uuid:id>", case_apis.ParametersDetailApi.as_view(),
         name="parameters-detail"),
    path("workflows/run", case_apis.WorkflowRunApi.as_view(), name="workflow-run"),
    path("workflows/<uuid:id>", case_apis.WorkflowDetailApi.as_view(), name="workflow-detail"),
    path("workflows/<uuid:id>/result", case_apis.WorkflowResultApi.as_view(),
         name="workflow-result"),
    path("webhooks", methods(webhook_apis.WebhookListApi, webhook_apis.WebhookCreateApi),
         name="webhooks"),
    path("webhooks/<int:id>", webhook_apis.WebhookDeleteApi.as_view(), name="webhook-detail"),
    # Workflow definitions and executions
    path("workflow-definitions", methods(definitions.DefinitionListApi,
                                         definitions.DefinitionCreateApi),
         name="definitions"),
    path("workflow-definitions/<slug:id>",
         methods(definitions.DefinitionDetailApi, definitions.DefinitionReplaceApi,
                 definitions.DefinitionUpdateApi, definitions.DefinitionDisableApi),
         name="definition-detail"),
    path("workflow-definitions/<slug:id>/pause", pauses.DefinitionPauseApi.as_view(),
         name="workflow-definition-pause"),
    path("workflow-definitions/<slug:id>/resume", pauses.DefinitionResumeApi.as_view(),
         name="workflow-definition-resume"),
    path("pause-all", pauses.PauseAllApi.as_view(), name="pause-all"),
    path("resume-all", pauses.ResumeAllApi.as_view(), name="resume-all"),
    path("executions/rerun", rerun_apis.ExecutionsRerunApi.as_view(), name="executions-rerun"),
    path("executions/<uuid:id>", run_apis.ExecutionDetailApi.as_view(), name="execution-detail"),
    path("executions/<uuid:id>/rerun", rerun_apis.ExecutionRerunApi.as_view(),
         name="execution-rerun"),
    path("executions/<uuid:id>/retry", rerun_apis.ExecutionRetryApi.as_view(),
         name="execution-retry"),
    path("executions/<uuid:id>/cancel", run_apis.ExecutionCancelApi.as_view(),
         name="execution-cancel"),
    path("events", event_apis.EventPublishApi.as_view(), name="events"),
    path("runs", run_apis.RunListApi.as_view(), name="runs"),
    # Functions
    path("functions", methods(function_apis.FunctionListApi, function_apis.FunctionCreateApi),
         name="functions"),
    path("functions/<str:name>",
         methods(function_apis.FunctionDetailApi, function_apis.FunctionReplaceApi,
                 function_apis.FunctionDeleteApi),
         name="function-detail"),
    # Agents
    path("agents", methods(agent_apis.AgentListApi, agent_apis.AgentCreateApi), name="agents"),
    path("agents/<slug:key>",
         methods(agent_apis.AgentDetailApi, agent_apis.AgentReplaceApi,
                 agent_apis.AgentUpdateApi),
         name="agent-detail"),
    # Entities, batches, approvals
    path("entity-types", entity_apis.EntityTypeListApi.as_view(), name="entity-types"),
    path("entity-types/<slug:key>", entity_apis.EntityTypeDetailApi.as_view(),
         name="entity-type-detail"),
    path("entity-types/<slug:type>/entities/<str:reference>",
         entity_apis.EntityUpsertApi.as_view(), name="entity-upsert"),
    path("entities", methods(entity_apis.EntityListApi, entity_apis.EntityCreateApi),
         name="entities"),
    path("entities/<uuid:id>", methods(entity_apis.EntityDetailApi, entity_apis.EntityUpdateApi),
         name="entity-detail"),
    path("entities/<uuid:id>/transition", entity_apis.EntityTransitionApi.as_view(),
         name="entity-transition"),
    path("entities/<uuid:id>/process", entity_apis.EntityProcessApi.as_view(),
         name="entity-process"),
    path("entities/<uuid:id>/explain", explain_apis.EntityExplainApi.as_view(),
         name="entity-explain"),
    path("entities/<uuid:id>/timeline", explain_apis.EntityTimelineApi.as_view(),
         name="entity-timeline"),
    path("batches", batch_apis.BatchCreateApi.as_view(), name="batches"),
    path("batches/<uuid:id>", batch_apis.BatchDetailApi.as_view(), name="batch-detail"),
    path("batches/<uuid:id>/cancel", batch_apis.BatchCancelApi.as_view(), name="batch-cancel"),
    path("batches/<uuid:id>/pause", rerun_apis.BatchPauseApi.as_view(), name="batch-pause"),
    path("batches/<uuid:id>/resume", rerun_apis.BatchResumeApi.as_view(), name="batch-resume"),
    path("batches/<uuid:id>/retry-failed", batch_apis.BatchRetryFailedApi.as_view(),
         name="batch-retry-failed"),
    path("approvals", approval_apis.ApprovalListApi.as_view(), name="approvals"),
    path("approvals/<int:id>/decide", approval_apis.ApprovalDecideApi.as_view(),
         name="approval-decide"),
    # Anything else under /api/: 404 in the one error format (line breaks included: `.`
    # does not match one, and `$` would match before a trailing one).
    re_path(r"^(?P<rest>[\s\S]*)\Z", NotFoundApi.as_view(), name="not-found"),
]

PUBLIC = {"auth-authorize", "auth-refresh", "schema", "docs"}
