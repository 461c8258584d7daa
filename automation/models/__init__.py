from automation.models.agents import Agent
from automation.models.approvals import ApprovalLinkUse, ApprovalRequest
from automation.models.batches import Batch
from automation.models.clients import ApiClient, ApiToken
from automation.models.connections import Connection, Function
from automation.models.flow import ConcurrencyGate, DebounceMark, DedupeMark
from automation.models.inbound import InboundDelivery
from automation.models.operations import Effect, HeldStart, ProcessBreaker, RateBucket
from automation.models.processes import ApiProcess, IndexStamp, ProcessTrigger, ProcessVersion
from automation.models.runs import Parameters, Priority, Run, StepRun
from automation.models.waits import StepWait
from automation.models.webhooks import WebhookDelivery, WebhookSubscription

__all__ = [
    "Agent",
    "ApiClient", "ApiToken", "ConcurrencyGate", "DebounceMark", "DedupeMark",
    "InboundDelivery", "Effect", "HeldStart", "ProcessBreaker", "RateBucket",
    "ApiProcess", "ApprovalLinkUse", "ApprovalRequest", "Batch", "Connection", "Function",
    "IndexStamp",
    "Parameters", "Priority", "ProcessTrigger", "ProcessVersion", "Run", "StepRun", "StepWait",
    "WebhookDelivery", "WebhookSubscription",
]
