"""Requirement rules of an entity type, and what they say about one entity.

Pure functions over a `TypeRules` snapshot so they can be tested without a database
and evaluated once per save.
"""

from dataclasses import dataclass, field

from entities.exceptions import ExpressionEvaluationError
from entities.expressions import evaluate_bool


@dataclass(frozen=True)
class RequirementRule:
    name: str
    expression: str
    message: str


@dataclass(frozen=True)
class StatusRule:
    key: str
    fallback: str | None
    requirements: tuple[RequirementRule, ...] = ()


@dataclass(frozen=True)
class TypeRules:
    initial: str | None
    statuses: dict[str, StatusRule]
    transitions: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def allowed_targets(self, source: str) -> set[str]:
        allowed = set(self.transitions.get(source, ()))
        fallback = self.statuses[source].fallback if source in self.statuses else None
        if fallback:
            allowed.add(fallback)
        return allowed


@dataclass(frozen=True)
class Outcome:
    entered: list[str]
    unmet: list[dict]

    @property
    def final_status(self) -> str | None:
        return self.entered[-1] if self.entered else None


_cache: dict[tuple[int, int], TypeRules] = {}


def load_rules(entity_type) -> TypeRules:
    """The type's rules, rebuilt only when its `rules_version` moved.

    One small query per call reads the current version, so a change made by another
    process (the admin, a worker) is seen by the very next save.
    """
    from entities.models import EntityType

    version = EntityType.objects.filter(pk=entity_type.pk).values_list(
        "rules_version", flat=True).first() or 0
    key = (entity_type.pk, version)
    rules = _cache.get(key)
    if rules is None:
        if len(_cache) > 256:
            _cache.clear()
        rules = _cache[key] = _build_rules(entity_type)
    return rules


def _build_rules(entity_type) -> TypeRules:
    """Three queries, whatever the number of statuses and requirements."""
    statuses = list(entity_type.statuses.select_related("fallback").order_by("position", "id"))
    requirements: dict[int, list[RequirementRule]] = {}
    for req in entity_type.requirements.order_by("position", "id"):
        requirements.setdefault(req.status_id, []).append(
            RequirementRule(req.name, req.expression, req.message)
        )
    transitions: dict[str, list[str]] = {}
    for src, dst in entity_type.transitions.order_by("target__position", "id").values_list(
        "source__key", "target__key"
    ):
        transitions.setdefault(src, []).append(dst)
    initial = next((s.key for s in statuses if s.is_initial), statuses[0].key if statuses else None)
    return TypeRules(
        initial=initial,
        statuses={
            s.key: StatusRule(
                s.key, s.fallback.key if s.fallback else None, tuple(requirements.get(s.id, ()))
            )
            for s in statuses
        },
        transitions={k: tuple(v) for k, v in transitions.items()},
    )


def failing(rules: TypeRules, status: str, scope: dict) -> list[dict]:
    """The requirements of `status` that do not hold, each with its message and reason."""
    unmet = []
    for rule in rules.statuses[status].requirements if status in rules.statuses else ():
        try:
            holds, reason = evaluate_bool(rule.expression, scope), None
        except ExpressionEvaluationError as exc:
            holds, reason = False, exc.message
        if not holds:
            unmet.append(
                {"requirement": rule.name, "status": status, "message": rule.message,
                 "reason": reason}
            )
    return unmet


def settle(rules: TypeRules, current: str, scope: dict, *, came_from: str | None = None) -> Outcome:
    """Follow fallbacks and auto-advances from `current` until the entity rests.

    Only statuses that have requirements advance on their own; the others wait for an
    explicit transition. A status is entered at most once per save, so rules cannot loop.
    `came_from` is the status an explicit transition just left: the same save must not
    move straight back there (staff suspending an approved order keep it suspended).
    """
    entered: list[str] = []
    status, visited = current, {current, came_from} - {None}
    for _ in range(len(rules.statuses)):
        fallback = rules.statuses[status].fallback if status in rules.statuses else None
        if fallback and fallback not in visited and failing(rules, status, scope):
            status = fallback
        else:
            status = _first_ready_target(rules, status, visited, scope)
            if status is None:
                break
        entered.append(status)
        visited.add(status)
    resting = entered[-1] if entered else current
    unmet = failing(rules, resting, scope)
    for target in rules.transitions.get(resting, ()):
        if rules.statuses[target].requirements:
            unmet.extend(failing(rules, target, scope))
    return Outcome(entered=entered, unmet=unmet)


def _first_ready_target(rules: TypeRules, status: str, visited: set, scope: dict) -> str | None:
    for target in rules.transitions.get(status, ()):
        if target in visited or not rules.statuses[target].requirements:
            continue
        if not failing(rules, target, scope):
            return target
    return None
