from importlib import import_module

from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"
    verbose_name = "Automation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        import integrations.tracing as tracing
        from automation import checks, receivers  # noqa: F401  (checks register themselves)

        import_module("automation.functions.builtins")
        import_module("automation.functions.connectors")
        for module in getattr(settings, "ENTITYFLOW_FUNCTION_MODULES", []):
            import_module(module)  # user functions registered with @function
        receivers.connect()
        tracing.configure()  # off unless an exporter is configured (docs/operating.md#tracing)
        _wire_the_run_store()
        _wire_the_triggers()
        _wire_the_timeline()


def _wire_the_run_store() -> None:
    """The store calls up through these, so it never imports the layers above it
    (docs/architecture.md, "Layers")."""
    from django_q.signals import pre_execute

    from automation.engine import traces
    from automation.engine.executor import execute_step
    from automation.engine.steps import set_process_starter
    from automation.services import approvals, notifications, subprocesses
    from automation.store import doorbell, hooks, recording
    from automation.store.subprocesses import children_active, is_not_a_child

    doorbell.set_synchronous_runner(execute_step)
    hooks.on_run_end("webhooks", notifications.run_finished,
                     idle_when=notifications.subscribers_of)
    # a sub-process's end finishes the parent step waiting for it, in the same transaction
    hooks.on_run_end("sub-processes", recording.resume_parent, idle_when=children_active,
                     idle_for=is_not_a_child)
    set_process_starter(subprocesses.start_child)
    # a doorbell taken ahead by a worker's pusher begins: its "not begun" marker goes
    # (store.queues)
    pre_execute.connect(lambda task, **_: doorbell.taken_begun(task), weak=False,
                        dispatch_uid="entityflow-taken-begun")
    hooks.on_run_end("traces", traces.run_end_hook, idle_when=traces.spans_need_no_rows)
    hooks.on_approval_requested("human-tasks", approvals.approval_opened)


def _wire_the_triggers() -> None:
    """A change to any process's triggers rebuilds the index, then the schedules."""
    from automation.services.processes import triggers_changed
    from automation.triggers import events, schedules

    triggers_changed.connect(lambda **_: events.invalidate(), weak=False,
                             dispatch_uid="entityflow-trigger-index")
    triggers_changed.connect(lambda **_: schedules.sync_schedules(), weak=False,
                             dispatch_uid="entityflow-schedules")


def _wire_the_timeline() -> None:
    """Runs, steps, approvals and webhooks on an entity's timeline (entities.timeline)."""
    from automation.services import timeline

    timeline.register()
