from importlib import import_module

from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"
    verbose_name = "Automation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from automation import checks, receivers  # noqa: F401  (checks register themselves)

        import_module("automation.functions.builtins")
        import_module("automation.functions.connectors")
        for module in getattr(settings, "ENTITYFLOW_FUNCTION_MODULES", []):
            import_module(module)  # user functions registered with @function
        receivers.connect()
