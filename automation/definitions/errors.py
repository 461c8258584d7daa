"""Definition problems collected with the path they belong to (`steps[3].next`), so the
API and the admin editor can show each error next to the step it names."""

from typing import Any

from automation.definitions.scope import STEP_NAMES
from entities.exceptions import ExpressionError
from entities.expressions import validate_expression


class DefinitionErrors:
    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.fields.setdefault(path, []).append(message)

    def __bool__(self) -> bool:
        return bool(self.fields)


def check_expression(source: Any, path: str, errors: DefinitionErrors, *,
                     variables: frozenset[str] = STEP_NAMES, where: str = "in a step") -> None:
    """Syntax, bounds, functions CEL provides, and names the expression can see there."""
    if not isinstance(source, str) or not source.strip():
        errors.add(path, "An expression is required here.")
        return
    try:
        validate_expression(source, variables=variables, where=where)
    except ExpressionError as exc:
        errors.add(path, exc.message)


def expression_tree_errors(tree: Any, path: str, *, variables: frozenset[str] = STEP_NAMES,
                           where: str = "in a step") -> dict[str, list[str]]:
    """Every string leaf of a config tree whose leaves are expressions (a transform's
    `output`, entity.update's `set`), checked as check_expression does."""
    errors = DefinitionErrors()

    def walk(node: Any, at: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{at}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{at}[{index}]")
        elif isinstance(node, str):
            check_expression(node, at, errors, variables=variables, where=where)

    walk(tree, path)
    return errors.fields


def check_int(config: dict, key: str, path: str, errors: DefinitionErrors, low: int, high: int):
    if key in config and (
        not isinstance(config[key], int) or isinstance(config[key], bool)
        or not low <= config[key] <= high
    ):
        errors.add(f"{path}.config.{key}", f"{key} must be a whole number from {low} to {high}.")
