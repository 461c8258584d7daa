"""A process definition as a graph of steps: what each step leads to, what it can
reach, which steps are joins or merges and which belong to a loop's body. Built once per
version (store.graphs caches it) from an already validated definition
(definitions.validation).

A step with several predecessors is one of two kinds (docs/user-guide/processes.md#merge-and-join):

- a **join** (AND-join) when two branches started together (the targets of one step's
  `next` list: a parallel fan-out) can both reach it: it waits for every branch that
  was started and sees `result` keyed by the step ids that arrived;
- a **merge** otherwise: the ways into it are mutually exclusive (the two sides of a
  condition, a step's success and its `onError`), only one of them is ever taken, so it
  runs as soon as that one arrives and sees that branch's `result` directly.
"""

from collections import deque
from dataclasses import dataclass, field

from automation.definitions.priority import defined_priorities
from automation.definitions.steps import Step, step_type

__all__ = ["Graph", "Step", "and_joins", "build_graph", "forward_edges"]


@dataclass
class Graph:
    steps: dict[str, Step]
    start: str
    reach: dict[str, set[str]]
    predecessors: dict[str, set[str]]
    loop_bodies: dict[str, set[str]]
    joins: set[str] = field(default_factory=set)
    # the process's priority and each trigger's by position (definitions.priority)
    priorities: tuple = (None, ())

    def is_join(self, step_id: str) -> bool:
        """An AND-join: it waits for the parallel branches that can reach it."""
        return step_id in self.joins

    def is_merge(self, step_id: str) -> bool:
        """Several ways in, only one ever taken: it runs when that one arrives."""
        return len(self.predecessors.get(step_id, ())) > 1 and step_id not in self.joins

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
        steps[raw["id"]] = Step(raw["id"], raw["type"], raw, targets,
                                zone=definition.get("timezone"))
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
    labelled = {sid: [(label, t) for label, t in forward_edges(s)
                      if not _is_back_edge(sid, t, loop_bodies)] for sid, s in steps.items()}
    return Graph(steps, definition["steps"][0]["id"], reach, predecessors, loop_bodies,
                 joins=and_joins(labelled), priorities=defined_priorities(definition))


def and_joins(edges: dict[str, list[tuple[str, str]]]) -> set[str]:
    """The steps that are AND-joins, from each step's forward edges as (label, target)
    (label "next" or "" for a `next` target; back edges of loops left out). Works on
    any edges, valid or not, so the editor's drawing can ask too.

    A step with several predecessors is a join when one step's `next` list starts two
    branches (they run at the same time) that reach it by paths sharing no step before
    it; branches that meet at a join first arrive there as one. Everything else with
    several predecessors is a merge."""
    successors: dict[str, list[str]] = {}
    predecessors: dict[str, set[str]] = {}
    for source, out in edges.items():
        for _label, target in out:
            successors.setdefault(source, []).append(target)
            predecessors.setdefault(target, set()).add(source)
    candidates = {sid for sid, preds in predecessors.items() if len(preds) > 1}
    if not candidates:
        return set()
    for sid in [*edges, *predecessors]:
        successors.setdefault(sid, [])
    reach = {sid: _reachable(successors, sid) | {sid} for sid in successors}
    joins = set()
    for out in edges.values():
        started = list(dict.fromkeys(t for label, t in out if label in ("next", "")))
        for i, first in enumerate(started):
            for second in started[i + 1:]:
                for sid in candidates - joins:
                    if (sid in reach.get(first, ()) and sid in reach.get(second, ())
                            and _disjoint_paths(successors, first, second, sid)):
                        joins.add(sid)
    return joins


def _disjoint_paths(successors: dict[str, list[str]], a: str, b: str, sink: str) -> bool:
    """Whether `a` and `b` reach `sink` by two paths with no step in common before it
    (a max flow of 2 with every step but the sink let through once)."""
    source = ("source",)
    capacity: dict = {}

    def arc(u, v, c=1):
        capacity.setdefault(u, {})[v] = capacity.get(u, {}).get(v, 0) + c
        capacity.setdefault(v, {}).setdefault(u, 0)

    for u, targets in successors.items():
        if u == sink:
            continue
        arc(("in", u), ("out", u))
        for v in targets:
            arc(("out", u), ("in", v))
    arc(source, ("in", a))
    arc(source, ("in", b))
    target = ("in", sink)
    flow = 0
    while flow < 2:
        parent = {source: None}
        todo = deque([source])
        while todo and target not in parent:
            u = todo.popleft()
            for v, c in capacity.get(u, {}).items():
                if c > 0 and v not in parent:
                    parent[v] = u
                    todo.append(v)
        if target not in parent:
            return False
        v = target
        while parent[v] is not None:
            u = parent[v]
            capacity[u][v] -= 1
            capacity[v][u] += 1
            v = u
        flow += 1
    return True


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
