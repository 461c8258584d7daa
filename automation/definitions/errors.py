"""Definition problems collected with the path they belong to (`steps[3].next`), so the
API and the admin editor can show each error next to the step it names."""

from typing import Any

from entities.exceptions import ExpressionError
from entities.expressions import validate_expression


class DefinitionErrors:
    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.fields.setdefault(path, []).append(message)

    def __bool__(self) -> bool:
        return bool(self.fields)


def check_expression(source: Any, path: str, errors: DefinitionErrors) -> None:
    if not isinstance(source, str) or not source.strip():
        errors.add(path, "An expression is required here.")
        return
    try:
        validate_expression(source)
    except ExpressionError as exc:
        errors.add(path, exc.message)


def check_int(config: dict, key: str, path: str, errors: DefinitionErrors, low: int, high: int):
    if key in config and (
        not isinstance(config[key], int) or isinstance(config[key], bool)
        or not low <= config[key] <= high
    ):
        errors.add(f"{path}.config.{key}", f"{key} must be a whole number from {low} to {high}.")
