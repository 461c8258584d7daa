"""The one check of a trigger's condition, shared by all four trigger types.

A condition that cannot be evaluated (an unknown name, a type error) is logged and
counts as "does not hold": the trigger skips, as it would for a false condition, and a
broken condition never starts a run nor fails the event, request or schedule that
asked. Explain asks the same check for its reasons (automation.definitions.conditions).
"""

import logging
from typing import Any

from automation.definitions.conditions import check_condition

logger = logging.getLogger(__name__)


def condition_holds(trigger_id: int | None, source: str | None, scope: dict[str, Any]) -> bool:
    """Whether trigger `trigger_id`'s condition `source` holds in `scope`
    (automation.definitions.scope.expression_scope). No condition always holds."""
    check = check_condition(source, scope)
    if check.error is not None:
        logger.warning("trigger %s condition failed: %s", trigger_id, check.error)
    return check.holds
