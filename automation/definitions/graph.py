"""A process definition as a graph of steps: what each step leads to, what it can
reach, which steps are joins and which belong to a loop's body. Built once per version
(store.graphs caches it) from an already validated definition (definitions.validation).
"""

from dataclasses import dataclass

from automation.definitions.steps import Step, step_type

__all__ = ["Graph", "Step", "build_graph", "forward_edges"]


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
    """(label, target) of every edge leaving the step; a loop's `then` included."""
    return step_type(step.type).edges(step)


def build_graph(definition: dict) -> Graph:
    """Graph of an already validated definition."""
    steps = {}
    for raw in definition["steps"]:
        nxt = raw.get("next") or []
        targets = [nxt] if isinstance(nxt, str) else list(nxt)
        steps[raw["id"]] = Step(raw["id"], raw["type"], raw, targets)
    loop_bodies = {sid: _loop_body(steps, sid)
                   for sid, s in steps.items() if step_type(s.type).has_body}
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
