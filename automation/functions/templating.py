"""Expressions inside config values: `{"total": "input.quantity * input.price"}` and
text with `{{ expression }}` placeholders."""

import json
import re
from typing import Any

from entities.expressions import evaluate

PLACEHOLDER = re.compile(r"\{\{\s*(.+?)\s*\}\}")


def evaluate_tree(template: Any, scope: dict) -> Any:
    """Every string leaf is an expression; dicts and lists keep their shape."""
    if isinstance(template, dict):
        return {key: evaluate_tree(value, scope) for key, value in template.items()}
    if isinstance(template, list):
        return [evaluate_tree(value, scope) for value in template]
    if isinstance(template, str):
        return evaluate(template, scope)
    return template


def render_text(text: str, scope: dict) -> str:
    """Replace each {{ expression }} with its value (objects as JSON)."""

    def value(match: re.Match) -> str:
        result = evaluate(match.group(1), scope)
        return result if isinstance(result, str) else json.dumps(result, default=str)

    return PLACEHOLDER.sub(value, text)


def render_tree(template: Any, scope: dict) -> Any:
    """Like evaluate_tree, but strings are text with placeholders, not expressions."""
    if isinstance(template, dict):
        return {key: render_tree(value, scope) for key, value in template.items()}
    if isinstance(template, list):
        return [render_tree(value, scope) for value in template]
    if isinstance(template, str):
        return render_text(template, scope)
    return template
