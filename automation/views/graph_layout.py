"""Where each step of a process graph goes (a small layered, Sugiyama-style layout).

A step sits one layer below the lowest step that leads to it. An edge that spans
several layers gets an invisible waypoint in each layer it crosses, so the ordering
keeps room for it and it never runs through a step box. Works on any input, valid or
not: a reference to an unknown step becomes a node of type "unknown".
"""

from dataclasses import dataclass, field

from automation.definitions.graph import and_joins
from automation.definitions.steps import BRANCH_KEYS, find_step_type

NODE_W, NODE_H, GAP_X, GAP_Y, PAD, WAYPOINT_W = 172, 50, 28, 58, 24, 16

Edge = tuple[str, str, str]  # (source, target, label); label "" is a plain `next`


@dataclass
class Node:
    id: str
    type: str
    index: int | None  # position in `steps`; None for unknown targets and waypoints
    label: str = ""
    layer: int = 0
    x: float = 0
    y: float = 0
    width: float = NODE_W
    preds: set[str] = field(default_factory=set)  # real steps leading here
    join: bool = False  # an AND-join (waits for its branches); several preds otherwise: a merge

    @property
    def cx(self) -> float:
        return self.x + self.width / 2


@dataclass
class Layout:
    nodes: dict[str, Node]
    edges: list[Edge]
    back: set[tuple[str, str]]  # loop bodies leading back to their loop
    waypoints: dict[int, list[Node]]  # edge index -> the waypoints it passes
    width: float
    height: float


def step_edges(raw: dict) -> list[tuple[str, str]]:
    """(label, target) of each edge of a raw step."""
    nxt = raw.get("next")
    targets = [nxt] if isinstance(nxt, str) else nxt if isinstance(nxt, list) else []
    edges = [("", t) for t in targets if isinstance(t, str) and t]
    config = raw.get("config") if isinstance(raw.get("config"), dict) else {}
    return edges + [
        (k, config[k]) for k in BRANCH_KEYS if isinstance(config.get(k), str) and config[k]
    ]


def layout(steps: list) -> Layout | None:
    nodes, edges = _nodes(steps)
    if not nodes:
        return None
    bodies = _loop_bodies(nodes, edges, steps)
    back = {(s, t) for s, t, _ in edges if t in bodies and s in bodies[t]}
    forward = [i for i, (s, t, _) in enumerate(edges) if (s, t) not in back and s != t]
    for i in forward:
        nodes[edges[i][1]].preds.add(edges[i][0])
    out: dict[str, list[tuple[str, str]]] = {}
    for i in forward:
        out.setdefault(edges[i][0], []).append((edges[i][2], edges[i][1]))
    for sid in and_joins(out):
        nodes[sid].join = True
    _assign_layers(nodes, [edges[i] for i in forward])
    waypoints, above = _add_waypoints(nodes, edges, forward)
    layers = _order(nodes, waypoints, above)
    width = _place(layers)
    height = PAD * 2 + 14 + len(layers) * (NODE_H + GAP_Y) - GAP_Y
    return Layout(nodes, edges, back, waypoints, width + PAD * 2 + 40, height)


def _nodes(steps: list) -> tuple[dict[str, Node], list[Edge]]:
    nodes: dict[str, Node] = {}
    for index, raw in enumerate(steps):
        if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"] not in nodes:
            nodes[raw["id"]] = Node(
                raw["id"], str(raw.get("type") or "?"), index, str(raw.get("name") or "")
            )
    edges = []
    for sid, node in list(nodes.items()):
        for label, target in step_edges(steps[node.index]):
            nodes.setdefault(target, Node(target, "unknown", None))
            edges.append((sid, target, label))
    return nodes, edges


def _loop_bodies(nodes: dict[str, Node], edges: list[Edge], steps: list) -> dict[str, set]:
    out: dict[str, list] = {}
    for s, t, _ in edges:
        out.setdefault(s, []).append(t)
    bodies = {}
    for sid, node in nodes.items():
        kind = find_step_type(node.type)
        if kind is None or not kind.has_body:
            continue
        config = steps[node.index].get("config")
        then = config.get("then") if isinstance(config, dict) else None
        body, todo = set(), [t for s, t, label in edges if s == sid and label == ""]
        while todo:
            cur = todo.pop()
            if cur not in body and cur not in (sid, then):
                body.add(cur)
                todo.extend(out.get(cur, []))
        bodies[sid] = body
    return bodies


def _assign_layers(nodes: dict[str, Node], forward: list[Edge]) -> None:
    start = next(iter(nodes))
    for _ in range(len(nodes)):  # longest path; bounded so a cycle cannot loop forever
        moved = False
        for source, target, _label in forward:
            if target != start and nodes[target].layer < nodes[source].layer + 1:
                nodes[target].layer = nodes[source].layer + 1
                moved = True
        if not moved:
            return


def _add_waypoints(nodes, edges, forward) -> tuple[dict[int, list[Node]], dict[str, set[str]]]:
    """Waypoints of long edges, and for every item the items just above it (for ordering)."""
    waypoints: dict[int, list[Node]] = {}
    above: dict[str, set[str]] = {sid: set() for sid in nodes}
    for i in forward:
        source, target, _ = edges[i]
        span = nodes[target].layer - nodes[source].layer
        if span < 1:
            continue
        chain = [
            Node(f"~{i}.{k}", "waypoint", None, layer=nodes[source].layer + k, width=WAYPOINT_W)
            for k in range(1, span)
        ]
        prev = source
        for point in chain:
            above[point.id] = {prev}
            prev = point.id
        above[target].add(prev)
        if chain:
            waypoints[i] = chain
    return waypoints, above


def _order(nodes: dict[str, Node], waypoints: dict[int, list[Node]], above) -> list[list[Node]]:
    """Barycenter ordering: down, up and down again, ties kept in definition order."""
    items = {**nodes, **{p.id: p for chain in waypoints.values() for p in chain}}
    layers: list[list[Node]] = [[] for _ in range(max(n.layer for n in items.values()) + 1)]
    for item in items.values():
        layers[item.layer].append(item)
    below: dict[str, set[str]] = {key: set() for key in items}
    for key, ups in above.items():
        for up in ups:
            below[up].add(key)
    rank = {item.id: i for layer in layers for i, item in enumerate(layer)}
    for neighbours, sweep in ((above, layers), (below, layers[::-1]), (above, layers)):
        for layer in sweep:
            layer.sort(key=lambda item, near=neighbours: _barycenter(item, near, rank))
            rank.update({item.id: i for i, item in enumerate(layer)})
    return layers


def _barycenter(item: Node, neighbours: dict[str, set[str]], rank: dict[str, int]) -> float:
    near = [rank[n] for n in neighbours.get(item.id, ()) if n in rank]
    return sum(near) / len(near) if near else rank[item.id]


def _place(layers: list[list[Node]]) -> float:
    widths = [sum(item.width for item in layer) + GAP_X * (len(layer) - 1) for layer in layers]
    width = max(widths)
    for depth, (layer, row) in enumerate(zip(layers, widths, strict=True)):
        x = PAD + (width - row) / 2
        for item in layer:
            item.x, item.y = x, PAD + 14 + depth * (NODE_H + GAP_Y)
            x += item.width + GAP_X
    return width
