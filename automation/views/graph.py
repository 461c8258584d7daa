"""The steps of a definition drawn as an inline SVG, on the server (layout: graph_layout).

Nodes are coloured by step type; edges carry their kind (else, onError, onTimeout,
then); a fan-out, a join and a merge are tagged; a loop body's way back is dashed. It draws
whatever it is given, so the editor can show a broken definition as it is.
"""

from html import escape

from django.utils.safestring import SafeString, mark_safe

from automation.views.graph_layout import NODE_H, NODE_W, Layout, Node, layout, step_edges

__all__ = ["render_graph", "step_edges"]


def render_graph(definition, *, error_indexes: frozenset | set = frozenset()) -> SafeString | None:
    """An <svg> of the definition's steps, or None when there are none to draw."""
    steps = definition.get("steps") if isinstance(definition, dict) else None
    drawn = layout(steps) if isinstance(steps, list) else None
    if drawn is None:
        return None
    parts = [_defs()]
    parts += [_edge(drawn, i) for i in range(len(drawn.edges))]
    fans = {}
    for source, _target, label in drawn.edges:
        fans[source] = fans.get(source, 0) + (label == "")
    parts += [_node(n, n.index in error_indexes, fans.get(n.id, 0)) for n in drawn.nodes.values()]
    w, h = f"{drawn.width:.0f}", f"{drawn.height:.0f}"
    svg = (
        f'<svg class="ef-graph-svg" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-label="Process steps graph" viewBox="0 0 {w} {h}" width="{w}" height="{h}">'
        f"{''.join(parts)}</svg>"
    )
    return mark_safe(svg)  # noqa: S308 - every piece of user text in it is escaped


def _defs() -> str:
    return (
        '<defs><marker id="ef-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="ef-arrowhead"/></marker></defs>'
    )


def _edge(drawn: Layout, i: int) -> str:
    source, target, label = drawn.edges[i]
    a, b = drawn.nodes[source], drawn.nodes[target]
    if (source, target) in drawn.back or b.layer <= a.layer:
        return _side_edge(a, b, label)
    points = [(a.cx, a.y + NODE_H)]
    for point in drawn.waypoints.get(i, []):
        points += [(point.cx, point.y), (point.cx, point.y + NODE_H)]
    points.append((b.cx, b.y - 2))
    path = f"M{points[0][0]:.0f},{points[0][1]:.0f}"
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 == x1 and y1 - y0 == NODE_H:  # straight down through a waypoint's layer
            path += f" L{x1:.0f},{y1:.0f}"
        else:
            mid = (y0 + y1) / 2
            path += f" C{x0:.0f},{mid:.0f} {x1:.0f},{mid:.0f} {x1:.0f},{y1:.0f}"
    (x0, y0), (x1, y1) = points[0], points[1]
    cls = f"ef-edge ef-edge-{label or 'next'}"
    return _path(cls, path) + _label(label, (x0 + x1) / 2, (y0 + y1) / 2)


def _side_edge(a: Node, b: Node, label: str) -> str:
    """A way back up (a loop body returning to its loop), drawn round the right side."""
    sx, sy, tx, ty = a.x + NODE_W, a.y + NODE_H / 2, b.x + NODE_W, b.y + NODE_H / 2
    bend = max(sx, tx) + 46
    path = f"M{sx:.0f},{sy:.0f} C{bend:.0f},{sy:.0f} {bend:.0f},{ty:.0f} {tx + 2:.0f},{ty:.0f}"
    return _path("ef-edge ef-edge-back", path) + _label(label, bend - 12, (sy + ty) / 2)


def _path(cls: str, d: str) -> str:
    return f'<path class="{cls}" d="{d}" marker-end="url(#ef-arrow)"/>'


def _label(label: str, x: float, y: float) -> str:
    if not label:
        return ""
    w = 8 + 6.2 * len(label)
    box = f'<rect x="{x - w / 2:.0f}" y="{y - 9:.0f}" width="{w:.0f}" height="18" rx="9"/>'
    text = f'<text x="{x:.0f}" y="{y + 4:.0f}" text-anchor="middle">{escape(label)}</text>'
    return f'<g class="ef-edge-label ef-edge-label-{escape(label)}">{box}{text}</g>'


def _short(text: str, limit: int = 22) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _node(n: Node, has_error: bool, fan: int) -> str:
    classes = f"ef-node ef-node-{escape(n.type)}" + (" ef-node-error" if has_error else "")
    data = f' data-step-index="{n.index}"' if n.index is not None else ""
    kind = "unknown step" if n.type == "unknown" else n.type
    title = escape(f"{n.id} ({kind})" + (f" — {n.label}" if n.label else ""))
    x, y = f"{n.x:.0f}", f"{n.y:.0f}"
    tx, ty1, ty2 = f"{n.x + 14:.0f}", f"{n.y + 18:.0f}", f"{n.y + 37:.0f}"
    out = [
        f'<g class="{classes}"{data} tabindex="0"><title>{title}</title>',
        f'<rect class="ef-node-box" x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="8"/>',
        f'<rect class="ef-node-band" x="{x}" y="{y}" width="5" height="{NODE_H}" rx="2"/>',
        f'<text class="ef-node-type" x="{tx}" y="{ty1}">{escape(kind.upper())}</text>',
        f'<text class="ef-node-id" x="{tx}" y="{ty2}">{escape(_short(n.id))}</text>',
    ]
    if fan > 1:
        out.append(_tag(n.x + NODE_W - 8, n.y + NODE_H + 2, f"fan-out ×{fan}", "ef-tag-fan"))
    if len(n.preds) > 1 and n.join:
        out.append(_tag(n.x + NODE_W, n.y - 17, f"join · waits for {len(n.preds)}", "ef-tag-join"))
    elif len(n.preds) > 1:  # exclusive ways in: runs when the one taken arrives
        out.append(_tag(n.x + NODE_W, n.y - 17, "merge", "ef-tag-merge"))
    out.append("</g>")
    return "".join(out)


def _tag(right: float, y: float, text: str, cls: str) -> str:
    w = 10 + 6 * len(text)
    left = right - w
    box = f'<rect x="{left:.0f}" y="{y:.0f}" width="{w:.0f}" height="15" rx="7.5"/>'
    mid = f"{left + w / 2:.0f}"
    label = f'<text x="{mid}" y="{y + 11:.0f}" text-anchor="middle">{escape(text)}</text>'
    return f'<g class="ef-tag {cls}">{box}{label}</g>'
