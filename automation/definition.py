"""Process definitions: the JSON shape of DESIGN §2, validated into a step graph.

Validation collects every problem with the path it belongs to (`steps[3].next`) so the
API and the admin editor can show each error next to the step it names.
"""

from dataclasses import dataclass, field
from typing import Any

from entities.exceptions import ExpressionError
from entities.expressions import validate_expression

STEP_TYPES = {"function", "condition", "parallel", "loop", "human", "agent"}
TRIGGER_TYPES = {"status", "event", "schedule", "webhook", "manual"}
MAX_STEPS = 500
STEP_KEYS = {"id", "name", "type", "function", "condition", "next", "config", "description"}
TRIGGER_KEYS = {"type", "config", "condition", "name", "description"}


@dataclass
class Step:
    id: str
    type: str
    raw: dict
    next: list[str] = field(default_factory=list)

    @property
    def config(self) -> dict:
        return self.raw.get("config") or {}

    @property
    def on_error(self) -> str | None:
        return self.config.get("onError")


@dataclass
class Graph:
    steps: dict[str, Step]
    start: str
    reach: dict[str, set[str]]
    predecessors: dict[str, set[str]]
    loop_bodies: dict[str, set[str]]

    def is_join(self, step_id: str) -> bool:
        return len(self.predecessors.get(step_id, ())) > 1

    def owning_loop(self, step_id: str) -> str | None:
        """The innermost loop whose body holds the step."""
        owners = [loop for loop, body in self.loop_bodies.items() if step_id in body]
        owners.sort(key=lambda loop: len(self.loop_bodies[loop]))
        return owners[0] if owners else None


def forward_edges(step: Step) -> list[tuple[str, str]]:
    """(label, target) of every edge leaving the step; loop `then` included."""
    edges = [("next", target) for target in step.next]
    for key in ("else", "onError", "onTimeout", "then"):
        target = step.config.get(key)
        if isinstance(target, str) and target:
            edges.append((key, target))
    return edges


def build_graph(definition: dict) -> Graph:
    """Graph of an already validated definition."""
    steps = {}
    for raw in definition["steps"]:
        nxt = raw.get("next") or []
        steps[raw["id"]] = Step(raw["id"], raw["type"], raw, [nxt] if isinstance(nxt, str) else list(nxt))
    loop_bodies = {sid: _loop_body(steps, sid) for sid, s in steps.items() if s.type == "loop"}
    edges = {sid: [t for _, t in forward_edges(s) if not _is_back_edge(sid, t, loop_bodies)]
             for sid, s in steps.items()}
    predecessors: dict[str, set[str]] = {sid: set() for sid in steps}
    for sid, targets in edges.items():
        for target in targets:
            if target in predecessors:
                predecessors[target].add(sid)
    reach = {sid: _reachable(edges, sid) for sid in steps}
    return Graph(steps, definition["steps"][0]["id"], reach, predecessors, loop_bodies)


def _is_back_edge(source: str, target: str, loop_bodies: dict[str, set[str]]) -> bool:
    return target in loop_bodies and source in loop_bodies[target]


def _loop_body(steps: dict[str, Step], loop_id: str) -> set[str]:
    """Steps reached from the loop's `next` without passing the loop or its `then`."""
    loop = steps[loop_id]
    stop = {loop_id, loop.config.get("then")}
    body, todo = set(), list(loop.next)
    while todo:
        sid = todo.pop()
        if sid in body or sid in stop or sid not in steps:
            continue
        body.add(sid)
        todo.extend(t for _, t in forward_edges(steps[sid]))
    return body


def _reachable(edges: dict[str, list[str]], start: str) -> set[str]:
    seen, todo = set(), list(edges.get(start, []))
    while todo:
        sid = todo.pop()
        if sid not in seen and sid in edges:
            seen.add(sid)
            todo.extend(edges[sid])
    return seen


class DefinitionErrors:
    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.fields.setdefault(path, []).append(message)

    def __bool__(self) -> bool:
        return bool(self.fields)


def validate_definition(
    definition: Any, *, function_exists, check_params=None
) -> dict[str, list[str]]:
    """Every problem of a definition, keyed by path; empty when it is valid.

    `function_exists(name) -> bool` is passed in so this module stays free of the registry;
    so is `check_params(name, params) -> {path: [messages]}`, what a function itself checks
    in a step's `config.params` (e.g. the expressions of http.request's response mapping).
    """
    errors = DefinitionErrors()
    if not isinstance(definition, dict):
        errors.add("definition", "Expected a JSON object with steps and triggers.")
        return errors.fields
    steps = definition.get("steps")
    if not isinstance(steps, list) or not steps:
        errors.add("steps", "A process needs at least one step.")
        return errors.fields
    if len(steps) > MAX_STEPS:
        errors.add("steps", f"At most {MAX_STEPS} steps are allowed; got {len(steps)}.")
        return errors.fields
    ids = _check_steps(steps, errors, function_exists)
    if check_params is not None:
        _check_function_params(steps, errors, check_params)
    _check_triggers(definition.get("triggers", []), errors)
    if errors:
        return errors.fields
    _check_graph(definition, ids, errors)
    return errors.fields


def _check_function_params(steps: list, errors: DefinitionErrors, check_params) -> None:
    for i, raw in enumerate(steps):
        if not isinstance(raw, dict) or raw.get("type") != "function":
            continue
        config = raw.get("config")
        params = config.get("params") if isinstance(config, dict) else None
        if isinstance(params, dict) and isinstance(raw.get("function"), str):
            for sub, problems in check_params(raw["function"], params).items():
                for problem in problems:
                    errors.add(f"steps[{i}].config.params.{sub}", problem)


def _check_steps(steps: list, errors: DefinitionErrors, function_exists) -> dict[str, int]:
    ids: dict[str, int] = {}
    for i, raw in enumerate(steps):
        path = f"steps[{i}]"
        if not isinstance(raw, dict):
            errors.add(path, "Each step must be an object.")
            continue
        sid = raw.get("id")
        if not isinstance(sid, str) or not sid.strip() or len(sid) > 100:
            errors.add(f"{path}.id", "A step needs an id (text, at most 100 characters).")
        elif sid in ids:
            errors.add(f"{path}.id", f"Duplicate step id '{sid}' (also steps[{ids[sid]}]).")
        else:
            ids[sid] = i
        for key in sorted(set(raw) - STEP_KEYS):
            errors.add(f"{path}.{key}", f"Unknown key '{key}'.")
        _check_step_fields(raw, path, errors, function_exists)
    for i, raw in enumerate(steps):
        if isinstance(raw, dict):
            _check_references(raw, f"steps[{i}]", ids, errors)
    return ids


def _check_step_fields(raw: dict, path: str, errors: DefinitionErrors, function_exists) -> None:
    stype, config = raw.get("type"), raw.get("config", {})
    if stype not in STEP_TYPES:
        errors.add(f"{path}.type", f"Unknown step type {stype!r}; use one of {', '.join(sorted(STEP_TYPES))}.")
    if not isinstance(config, dict):
        errors.add(f"{path}.config", "config must be an object.")
        return
    nxt = raw.get("next")
    if nxt is not None and not isinstance(nxt, str) and not (
        isinstance(nxt, list) and all(isinstance(n, str) for n in nxt)
    ):
        errors.add(f"{path}.next", "next must be a step id or a list of step ids.")
    if stype == "function":
        name = raw.get("function")
        if not isinstance(name, str) or not name:
            errors.add(f"{path}.function", "A function step names its function.")
        elif not function_exists(name):
            errors.add(f"{path}.function", f"Unknown function '{name}'.")
        _check_int(config, "retries", path, errors, 0, 20)
        _check_int(config, "timeout", path, errors, 1, 3_600_000)
    elif stype == "condition":
        _check_expression(raw.get("condition"), f"{path}.condition", errors)
        if not raw.get("next") and not config.get("else"):
            errors.add(f"{path}.next", "A condition needs next (when true) or config.else.")
    elif stype == "loop":
        _check_expression(config.get("items"), f"{path}.config.items", errors)
        _check_int(config, "maxIterations", path, errors, 1, 10_000)
        if not raw.get("next"):
            errors.add(f"{path}.next", "A loop needs next: the first step of its body.")
    elif stype == "human":
        people = config.get("approvers") or config.get("reviewers")
        if not isinstance(people, list) or not people or not all(isinstance(p, str) for p in people):
            errors.add(f"{path}.config.approvers", "List at least one approver (user, email or group:<name>).")
        _check_int(config, "requiredApprovals", path, errors, 1, 100)
        _check_int(config, "timeout", path, errors, 1, 365 * 86_400_000)
    elif stype == "agent" and not isinstance(config.get("agentRole"), str):
        errors.add(f"{path}.config.agentRole", "An agent step needs config.agentRole (its instructions).")
    if "input" in config:
        mapping = config["input"]
        if not isinstance(mapping, dict):
            errors.add(f"{path}.config.input", "input must map names to expressions.")
        else:
            for key, expr in mapping.items():
                _check_expression(expr, f"{path}.config.input.{key}", errors)


def _check_int(config: dict, key: str, path: str, errors: DefinitionErrors, low: int, high: int):
    if key in config and (
        not isinstance(config[key], int) or isinstance(config[key], bool)
        or not low <= config[key] <= high
    ):
        errors.add(f"{path}.config.{key}", f"{key} must be a whole number from {low} to {high}.")


def _check_expression(source: Any, path: str, errors: DefinitionErrors) -> None:
    if not isinstance(source, str) or not source.strip():
        errors.add(path, "An expression is required here.")
        return
    try:
        validate_expression(source)
    except ExpressionError as exc:
        errors.add(path, exc.message)


def _check_references(raw: dict, path: str, ids: dict, errors: DefinitionErrors) -> None:
    nxt = raw.get("next")
    targets = [nxt] if isinstance(nxt, str) else (nxt if isinstance(nxt, list) else [])
    for target in targets:
        if isinstance(target, str) and target not in ids:
            errors.add(f"{path}.next", f"unknown step '{target}'")
    config = raw.get("config") if isinstance(raw.get("config"), dict) else {}
    for key in ("else", "onError", "onTimeout", "then"):
        target = config.get(key)
        if target is not None and (not isinstance(target, str) or target not in ids):
            errors.add(f"{path}.config.{key}", f"unknown step '{target}'")


def _check_triggers(triggers: Any, errors: DefinitionErrors) -> None:
    if not isinstance(triggers, list):
        errors.add("triggers", "triggers must be a list.")
        return
    for i, trig in enumerate(triggers):
        path = f"triggers[{i}]"
        if not isinstance(trig, dict) or trig.get("type") not in TRIGGER_TYPES:
            errors.add(f"{path}.type", f"Trigger type must be one of {', '.join(sorted(TRIGGER_TYPES))}.")
            continue
        for key in sorted(set(trig) - TRIGGER_KEYS, key=str):
            errors.add(f"{path}.{key}", f"Unknown key '{key}'; a trigger has "
                                        f"{', '.join(sorted(TRIGGER_KEYS))}.")
        config = trig.get("config") or {}
        if not isinstance(config, dict):
            errors.add(f"{path}.config", "config must be an object.")
            continue
        required = {"status": ["entityType", "status"], "event": ["eventType"],
                    "schedule": ["cron"], "webhook": ["path"]}.get(trig["type"], [])
        for key in required:
            if not isinstance(config.get(key), str) or not config.get(key):
                errors.add(f"{path}.config.{key}", f"A {trig['type']} trigger needs config.{key}.")
        _check_trigger_config(trig["type"], config, path, errors)
        if trig.get("condition") is not None:
            _check_expression(trig.get("condition"), f"{path}.condition", errors)


def _check_trigger_config(kind: str, config: dict, path: str, errors: DefinitionErrors) -> None:
    """Cron and time zone of schedules, path and credentials of webhooks."""
    from automation.inbound.validation import validate_webhook_config
    from automation.triggers.schedules import validate_schedule_config

    check = {"schedule": validate_schedule_config, "webhook": validate_webhook_config}.get(kind)
    for key, messages in (check(config, prefix=f"{path}.config") if check else {}).items():
        for message in messages:
            if message not in errors.fields.get(key, []):
                errors.add(key, message)


def _check_graph(definition: dict, ids: dict[str, int], errors: DefinitionErrors) -> None:
    graph = build_graph(definition)
    reachable = graph.reach[graph.start] | {graph.start}
    for sid, index in ids.items():
        if sid not in reachable:
            errors.add(f"steps[{index}]", f"Step '{sid}' is unreachable from the first step.")
    for sid in graph.steps:
        if sid in graph.reach[sid]:
            errors.add(f"steps[{ids[sid]}].next",
                       f"Step '{sid}' is part of a cycle; only a loop body may lead back to its loop.")
