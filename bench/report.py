"""The readable table and the goals each figure is held to."""

from dataclasses import dataclass

KEYS = ("save_overhead_none", "save_overhead_one", "save_entities", "match_flatness",
        "match_flatness_10k", "e2e_ratio",
        "e2e_nodb_ratio", "e2e_nodb_ceiling", "e2e_ratio_stored", "steps_per_s",
        "steps_per_s_inline",
        "first_step_p50_ms", "first_step_p99_ms", "first_step_p99_ratio", "batch_fanout_per_s",
        "batch_done_per_s", "batch_peak_rss_mb", "batch_size", "api_trigger_per_s",
        "api_trigger_ratio", "api_trigger_floor_per_s", "api_trigger_floor_ratio",
        "explain_ms_p50", "concurrency_overhead", "priority_start_ms")


@dataclass(frozen=True)
class Goal:
    op: str
    limit: float
    note: str = ""

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value <= self.limit if self.op == "<=" else value >= self.limit


def goals(db: str, broker: str) -> dict[str, Goal]:
    full = db == "postgres" and broker == "redis"
    return {
        "save_overhead_none": Goal("<=", 1.10),
        "save_overhead_one": Goal("<=", 2.0),
        "match_flatness": Goal("<=", 1.5),
        "match_flatness_10k": Goal("<=", 1.5),
        "e2e_ratio": Goal(">=", 1.0),
        "e2e_nodb_ratio": Goal(">=", 0.5),
        "steps_per_s": Goal(">=", 1500, "" if full else "goal applies to PostgreSQL + Redis"),
        "first_step_p99_ms": Goal("<=", 100 if broker == "redis" else 300),
        "first_step_p99_ratio": Goal("<=", 1.5),
        "batch_fanout_per_s": Goal(">=", 20000 if db == "postgres" else 10000),
        "batch_done_per_s": Goal(">=", 1000),
        "batch_peak_rss_mb": Goal("<=", 150),
        "api_trigger_per_s": Goal(">=", 300),
        "api_trigger_ratio": Goal(">=", 0.7),
        "explain_ms_p50": Goal("<=", 50),
        "concurrency_overhead": Goal("<=", 1.2),
        "priority_start_ms": Goal("<=", 1000),
    }


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def table(figures: dict, rows: list[tuple[str, str, str]], machine: dict, db: str,
          broker: str) -> str:
    lines = [f"entityflow bench — {machine['setup']}",
             f"machine: {machine['cores']} cores, {machine['ram_gb']} GB RAM; Python "
             f"{machine['python']}, Django {machine['django']}, {machine['database']}, "
             f"{machine['broker']}", ""]
    lines.append(f"{'figure':<24}{'value':>12}  {'goal':<10}  met")
    lines.append("-" * 60)
    targets = goals(db, broker)
    for key in KEYS:
        goal = targets.get(key)
        met = goal.met(figures.get(key)) if goal else None
        verdict = {True: "yes", False: "NO", None: "-"}[met]
        if goal and goal.note:
            verdict += f" ({goal.note})"
        goal_text = f"{goal.op} {fmt(goal.limit)}" if goal else ""
        lines.append(f"{key:<24}{fmt(figures.get(key)):>12}  {goal_text:<10}  {verdict}")
    lines += ["", "measurements:"]
    scenario = None
    for name, label, value in rows:
        if name != scenario:
            lines.append(f"  [{name}]")
            scenario = name
        lines.append(f"    {label:<62} {value}")
    return "\n".join(lines)
