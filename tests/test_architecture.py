"""The import rules of docs/contributing.md, checked by parsing every module with `ast`."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STDLIB = set(sys.stdlib_module_names)

# What each app may import besides the standard library and itself.
ALLOWED = {
    "entities": {"django", "rest_framework", "django_fsm", "jsonschema", "cel"},
    # urllib3 is requests' own transport: net.py reads the address a connection really
    # reached, which is how the outbound guard stops DNS rebinding.
    "integrations": {"requests", "django.conf", "urllib3"},
    "automation": {"django", "rest_framework", "drf_spectacular", "django_q", "django_filters",
                   "jsonschema", "croniter", "cryptography", "entities", "integrations.base",
                   "integrations.registry", "integrations.exceptions", "integrations.signing",
                   "integrations.webhook", "integrations.net", "redis", "requests",
                   # the one error shape of docs/rest-api.md, reused by views outside DRF (/hooks)
                   "config.api_errors"},
}
# Concrete connector modules automation must never import (it goes through the registry).
CONCRETE = ("integrations.hubspot", "integrations.dropbox", "integrations.openai", "integrations.http")


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def allowed(app: str, name: str) -> bool:
    top = name.split(".")[0]
    if top in STDLIB or top == app:
        return True
    return any(name == rule or name.startswith(rule + ".") for rule in ALLOWED[app])


def modules(app: str):
    return [p for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts]


@pytest.mark.parametrize("app", sorted(ALLOWED))
def test_app_imports_follow_the_rules(app):
    broken = [f"{path.relative_to(ROOT)} imports {name}" for path in modules(app)
              for name in imports_of(path) if not allowed(app, name)]
    assert not broken, "\n".join(broken)


def test_automation_never_imports_a_concrete_connector():
    broken = [f"{path.relative_to(ROOT)} imports {name}" for path in modules("automation")
              for name in imports_of(path) if name.startswith(CONCRETE)]
    assert not broken, "\n".join(broken)


def test_no_eval_or_exec_in_product_code():
    for app in ALLOWED:
        for path in modules(app):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") in {"eval", "exec"}:
                    pytest.fail(f"{path.relative_to(ROOT)}:{node.lineno} calls {node.func.id}")


# Within automation: definitions are the lowest layer, and the adapters (the trigger types,
# the REST API, the admin views) never import one another.
FORBIDDEN_WITHIN = {
    "automation/definitions": ("automation.triggers", "automation.api", "automation.views",
                               "automation.admin", "automation.services", "automation.engine"),
    "automation/triggers": ("automation.api", "automation.views", "automation.admin"),
    "automation/api": ("automation.triggers", "automation.views", "automation.admin"),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN_WITHIN))
def test_automation_layers_import_downwards_only(package):
    rules = FORBIDDEN_WITHIN[package]
    broken = [f"{path.relative_to(ROOT)} imports {name}"
              for path in (ROOT / package).rglob("*.py")
              for name in imports_of(path) if name.startswith(rules)]
    assert not broken, "\n".join(broken)
