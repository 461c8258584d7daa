"""Admin for automation: API processes (editor with a drawn graph), runs, the entity
processing control panel, the approvals inbox, and the integration lists.

The staff pages themselves live in automation.views and are mounted through each
ModelAdmin's get_urls(), so they share the admin's login, CSRF protection and look.
"""

from automation.admin.agents import AgentAdmin
from automation.admin.approvals import ApprovalRequestAdmin
from automation.admin.batches import BatchAdmin
from automation.admin.clients import ApiClientAdmin
from automation.admin.integrations import (
    ConnectionAdmin,
    FunctionAdmin,
    WebhookDeliveryAdmin,
    WebhookSubscriptionAdmin,
)
from automation.admin.parameters import ParametersAdmin
from automation.admin.processes import ApiProcessAdmin
from automation.admin.runs import RunAdmin

__all__ = [
    "AgentAdmin",
    "ApiClientAdmin",
    "ApiProcessAdmin",
    "ApprovalRequestAdmin",
    "BatchAdmin",
    "ConnectionAdmin",
    "FunctionAdmin",
    "ParametersAdmin",
    "RunAdmin",
    "WebhookDeliveryAdmin",
    "WebhookSubscriptionAdmin",
]
