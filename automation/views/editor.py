"""The process editor's side panel: the step list with each validation error beside the
step it names, and the drawn graph. Rendered on the server for the change page and
again, as HTML, for the live preview while typing."""

import json
import re
from typing import Any

from django.http import JsonResponse
from django.template.loader import render_to_string
from django.views.decorators.http import require_POST

from automation.definitions.steps import find_step_type
from automation.exceptions import DefinitionInvalidError
from automation.services.processes import definition_validate
from automation.views.common import require_perm
from automation.views.graph import render_graph, step_edges
from automation.views.present import public_webhook_warnings

STEP_PATH = re.compile(r"^steps\[(\d+)\](?:\.(.+))?$")
EDGE_NAMES = {
    "": "next",
    "else": "else",
    "onError": "on error",
    "onTimeout": "on timeout",
    "then": "then",
}


def parse_definition(text: str) -> tuple[Any, str | None]:
    """(definition, None) or (None, "line 3, column 5: Expecting ',' delimiter")."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"line {exc.lineno}, column {exc.colno}: {exc.msg}"


def validation_errors(definition: Any) -> dict[str, list[str]]:
    try:
        definition_validate(definition)
    except DefinitionInvalidError as exc:
        return exc.fields or {"definition": [exc.message]}
    return {}


def split_errors(errors: dict[str, list[str]]) -> tuple[dict[int, list[dict]], list[dict]]:
    """Errors by step index ({"field": "next", "message": ...}) and the rest."""
    by_step: dict[int, list[dict]] = {}
    general: list[dict] = []
    for path, messages in errors.items():
        match = STEP_PATH.match(path)
        for message in messages:
            if match:
                by_step.setdefault(int(match[1]), []).append(
                    {"field": match[2] or "", "message": message}
                )
            else:
                general.append({"field": path, "message": message})
    return by_step, general


def step_detail(raw: dict) -> str:
    """The step type's one-line summary; "" for a type that is not registered."""
    kind = find_step_type(raw.get("type"))
    return kind.summary(raw) if kind is not None else ""


def definition_panel(text: str, errors: dict[str, list[str]] | None = None) -> dict:
    definition, parse_error = parse_definition(text)
    if parse_error:
        return {
            "parse_error": parse_error,
            "steps": [],
            "general": [],
            "graph": None,
            "valid": False,
        }
    errors = validation_errors(definition) if errors is None else errors
    by_step, general = split_errors(errors)
    raw_steps = definition.get("steps") if isinstance(definition, dict) else None
    steps = []
    for index, raw in enumerate(raw_steps if isinstance(raw_steps, list) else []):
        raw = raw if isinstance(raw, dict) else {}
        steps.append(
            {
                "index": index,
                "id": str(raw.get("id") or f"(step {index})"),
                "type": str(raw.get("type") or "?"),
                "name": raw.get("name") or "",
                "detail": step_detail(raw),
                "edges": [
                    {"label": EDGE_NAMES.get(label, label), "target": target}
                    for label, target in step_edges(raw)
                ],
                "errors": by_step.get(index, []),
            }
        )
    triggers = definition.get("triggers") if isinstance(definition, dict) else None
    return {
        "parse_error": None,
        "steps": steps,
        "general": general,
        "warnings": public_webhook_warnings(definition),
        "valid": not errors,
        "error_count": sum(len(m) for m in errors.values()),
        "trigger_count": len(triggers) if isinstance(triggers, list) else 0,
        "graph": render_graph(definition, error_indexes=set(by_step)),
    }


@require_POST
def definition_preview(request, model_admin):
    """Live preview while typing: the panel's HTML for the posted definition."""
    require_perm(request, "automation.change_apiprocess", "automation.add_apiprocess")
    panel = definition_panel(request.POST.get("definition", ""))
    return JsonResponse(
        {
            "valid": panel["valid"],
            "errorCount": panel.get("error_count", 0),
            "steps": render_to_string(
                "automation/process/steps.html", {"panel": panel}, request=request
            ),
            "graph": render_to_string(
                "automation/process/graph.html", {"panel": panel}, request=request
            ),
        }
    )
