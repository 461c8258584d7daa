"""Limits every JSON body that comes in obeys, whichever door it comes through (the REST
API's parser, an inbound webhook): what no database can hold is refused before anything
else sees it, and both doors refuse the same bodies.

Nesting deeper than MAX_JSON_DEPTH is refused: JSON 10,000 deep would otherwise exhaust
Python's stack in the parser or later in the JSON encoder."""

from typing import Any

MAX_JSON_DEPTH = 100


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects nest deeper than `limit` (iterative, stops early)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return False
