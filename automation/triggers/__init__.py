"""The four ways a process starts, each a trigger type of its own module: status and
event triggers (events: the event index and dispatch), schedule triggers (schedules),
manual starts (manual) and inbound webhooks (webhooks, served under `/hooks`).

All of them check a trigger's condition with conditions.condition_holds against the
scope automation.definitions.scope.expression_scope builds, and start runs through
automation.services.runs.
"""
