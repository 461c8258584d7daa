"""The import rules of docs/contributing.md, checked by parsing every module with `ast`."""

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STDLIB = set(sys.stdlib_module_names)

# What each app may import besides the standard library and itself.
ALLOWED = {
    # psycopg: the PostgreSQL driver under Django's backend, whose own prepared statements
    # bind a step's claim and record on the server (entities/db/prepared.py)
    "entities": {"django", "rest_framework", "django_fsm", "jsonschema", "cel", "psycopg"},
    # urllib3 is requests' own transport: net.py reads the address a connection really
    # reached, which is how the outbound guard stops DNS rebinding.
    # standardwebhooks signs outbound deliveries the Standard Webhooks way (signing.py);
    # psycopg and (when installed) PyMySQL are the SQL connector's drivers: it opens a
    # plain connection to the user's database per call, never through Django's.
    # opentelemetry: traces (tracing.py), and the traceparent every outbound request carries
    "integrations": {"requests", "django.conf", "urllib3", "standardwebhooks", "psycopg",
                     "pymysql", "opentelemetry"},
    "automation": {"django", "rest_framework", "drf_spectacular", "django_q", "django_filters",
                   "jsonschema", "croniter", "cryptography", "entities", "integrations.base",
                   "integrations.registry", "integrations.exceptions", "integrations.signing",
                   "integrations.webhook", "integrations.net", "redis", "requests",
                   # spans and the stored trace context of runs (docs/operating.md#tracing)
                   "integrations.tracing",
                   # /metrics in the Prometheus format (automation/api)
                   "prometheus_client",
                   # the one error shape of docs/rest-api.md, reused by views outside DRF (/hooks)
                   "config.api_errors"},
}
# Concrete connector modules automation must never import (it goes through the registry).
CONCRETE = ("integrations.hubspot", "integrations.dropbox", "integrations.openai",
            "integrations.http", "integrations.sql")


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def allowed(app: str, name: str) -> bool:
    top = name.split(".")[0]
    if top in STDLIB or top == app:
        return True
    return any(name == rule or name.startswith(rule + ".") for rule in ALLOWED[app])


def modules(app: str):
    return [p for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts]


@pytest.mark.parametrize("app", sorted(ALLOWED))
def test_app_imports_follow_the_rules(app):
    broken = [f"{path.relative_to(ROOT)} imports {name}" for path in modules(app)
              for name in imports_of(path) if not allowed(app, name)]
    assert not broken, "\n".join(broken)


def test_automation_never_imports_a_concrete_connector():
    broken = [f"{path.relative_to(ROOT)} imports {name}" for path in modules("automation")
              for name in imports_of(path) if name.startswith(CONCRETE)]
    assert not broken, "\n".join(broken)


def test_no_eval_or_exec_in_product_code():
    for app in ALLOWED:
        for path in modules(app):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") in {"eval", "exec"}:
                    pytest.fail(f"{path.relative_to(ROOT)}:{node.lineno} calls {node.func.id}")


# Within automation: definitions are the lowest layer, and the adapters (the trigger types,
# the REST API, the admin views) never import one another.
FORBIDDEN_WITHIN = {
    "automation/definitions": ("automation.triggers", "automation.api", "automation.views",
                               "automation.admin", "automation.services", "automation.engine"),
    "automation/triggers": ("automation.api", "automation.views", "automation.admin"),
    "automation/api": ("automation.triggers", "automation.views", "automation.admin"),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN_WITHIN))
def test_automation_layers_import_downwards_only(package):
    rules = FORBIDDEN_WITHIN[package]
    broken = [f"{path.relative_to(ROOT)} imports {name}"
              for path in (ROOT / package).rglob("*.py")
              for name in imports_of(path) if name.startswith(rules)]
    assert not broken, "\n".join(broken)


# -- layers inside automation (docs/architecture.md, "Layers") ---------------------------

# Bottom to top. A module may import its own layer and the layers below it, never one
# above: the store never calls up into the engine, the engine never into the services.
LAYERS = [
    ("base", ("automation.exceptions", "automation.models", "automation.connections")),
    ("definitions", ("automation.definitions",)),
    ("functions", ("automation.functions",)),
    ("store", ("automation.store",)),
    ("engine", ("automation.engine",)),
    ("services", ("automation.services",)),
    ("adapters", ("automation.api", "automation.admin", "automation.views", "automation.triggers",
                  "automation.tasks", "automation.tasks_webhooks", "automation.management",
                  "automation.receivers", "automation.apps", "automation.checks",
                  "automation.demo")),
]
PRODUCT = ("entities", "automation", "integrations", "config")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_modules() -> dict[str, Path]:
    return {module_name(p): p for app in PRODUCT for p in modules(app)}


def layer_of(module: str) -> int | None:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def imported_modules(path: Path, known: dict[str, Path]) -> set[str]:
    """Every product module `path` imports, function-local imports included. `from a
    import b` names the module a.b when there is one, else a itself."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            candidates = [[alias.name] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            subs = [f"{base}.{alias.name}" for alias in node.names]
            candidates = [[sub] if sub in known else [base] for sub in subs]
        else:
            continue
        for (target,) in candidates:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_every_automation_module_has_a_layer():
    missing = [m for m in product_modules() if m.startswith("automation.") and layer_of(m) is None]
    assert not missing, f"give these modules a layer in LAYERS: {missing}"


def test_automation_imports_only_its_own_layer_and_those_below():
    known = product_modules()
    broken = []
    for name, path in known.items():
        rank = layer_of(name)
        if rank is None:
            continue
        for target in imported_modules(path, known):
            target_rank = layer_of(target)
            if target_rank is not None and target_rank > rank:
                broken.append(f"{name} ({LAYERS[rank][0]}) imports {target} "
                              f"({LAYERS[target_rank][0]})")
    assert not broken, "\n".join(sorted(broken))


def test_no_import_circle_among_product_modules():
    """Function-local imports count: they only hide a circle from the interpreter."""
    known = product_modules()
    graph = {name: imported_modules(path, known) for name, path in known.items()}
    circles = [sorted(c) for c in strongly_connected(graph) if len(c) > 1]
    assert not circles, "\n".join(" <-> ".join(c) for c in circles)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph has hundreds of modules)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
    return found


# -- the run store is the only writer of runs and step runs ------------------------------

RUN_MODELS = {"Run", "StepRun"}
WRITES = {"create", "bulk_create", "get_or_create", "update_or_create", "update", "delete",
          "bulk_update", "raw"}
RUN_VARIABLES = {"run", "step_run", "runs", "steps", "join", "loop", "loop_run"}
# SQL naming a run table (URL names such as admin:automation_run_change are not SQL)
RUN_TABLE_SQL = re.compile(r'\b(from|into|update|join|table)\s+"?automation_(run|steprun)\b', re.I)


def run_writes(path: Path) -> list[str]:
    """Writes on Run/StepRun rows: `Run.objects….update(…)`, `step_run.save()`,
    `batch.runs.update(…)`, `Run._meta.db_table` in SQL, the table names in text."""
    found = []
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method, chain = node.func.attr, _names(node.func.value)
            if method in WRITES and RUN_MODELS & set(chain[:1]) and "objects" in chain:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {'.'.join(chain)}.{method}")
            elif method in WRITES | {"save"} and chain[-1:] and chain[-1] in RUN_VARIABLES:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {'.'.join(chain)}.{method}")
        if isinstance(node, ast.Attribute) and node.attr == "db_table" and RUN_MODELS & set(
                _names(node.value)[:1]):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {_names(node.value)[0]} table")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and RUN_TABLE_SQL.search(
                node.value):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} names a run table")
    return found


def _names(node: ast.AST) -> list[str]:
    """`a.b.c` (or `a.b(…).c`) as ["a", "b", "c"], calls skipped."""
    names = []
    while True:
        if isinstance(node, ast.Attribute):
            names.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Name):
            names.append(node.id)
            return names[::-1]
        else:
            return names[::-1]


def test_runs_and_step_runs_are_written_only_in_the_store():
    writes = [hit for name, path in product_modules().items()
              if not name.startswith("automation.store") for hit in run_writes(path)]
    assert not writes, "write runs through automation.store:\n" + "\n".join(writes)


def sample_module(text: str) -> Path:
    """A module under the project for a finder to read (the checks above would pass on a
    finder that finds nothing: these make sure each finds what it is for)."""
    path = ROOT / "var" / "architecture_sample.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_the_write_finder_finds_writes():
    sample = sample_module(
        "Run.objects.filter(pk=1).update(status='x')\nstep_run.save()\n"
        "batch.runs.update(status='x')\nStepRun.objects.create()\n"
        "q = f'UPDATE {Run._meta.db_table}'\nsql = 'DELETE FROM automation_steprun'\n"
        "Run.objects.filter(pk=1).first()\n")
    assert len(run_writes(sample)) == 6


# -- step types are named once, in their registry ----------------------------------------

STEP_TYPE_NAMES = {"function", "condition", "parallel", "loop", "human", "agent"}
REGISTRY = "automation.definitions.steps"
TYPE_HOLDERS = {"type", "step_type", "kind", "stype"}


def step_type_switches(path: Path) -> list[str]:
    """Comparisons of a step's type with a type name (`step.type == "loop"`,
    `kind in ("condition", "parallel")`) and mappings keyed by type names."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if _mentions_type(operands) and _type_names(operands):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        elif isinstance(node, ast.Dict):
            keys = {k.value if isinstance(k, ast.Constant) else None for k in node.keys}
            if len(keys) >= 2 and keys <= STEP_TYPE_NAMES:  # not a schema's "function" key
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} (a mapping by type)")
    return found


def _type_names(operands: list[ast.AST]) -> set[str]:
    names = set()
    for operand in operands:
        values = operand.elts if isinstance(operand, ast.Tuple | ast.List | ast.Set) else [operand]
        names |= {v.value for v in values if isinstance(v, ast.Constant)} & STEP_TYPE_NAMES
    return names


def _mentions_type(operands: list[ast.AST]) -> bool:
    for operand in operands:
        if isinstance(operand, ast.Attribute) and operand.attr in TYPE_HOLDERS:
            return True
        if isinstance(operand, ast.Name) and operand.id in TYPE_HOLDERS:
            return True
        if isinstance(operand, ast.Subscript) and isinstance(operand.slice, ast.Constant) \
                and operand.slice.value == "type":
            return True
        if isinstance(operand, ast.Call) and isinstance(operand.func, ast.Attribute) \
                and operand.func.attr == "get" and operand.args \
                and isinstance(operand.args[0], ast.Constant) and operand.args[0].value == "type":
            return True
    return False


def test_step_types_are_switched_on_only_in_their_registry():
    switches = [hit for name, path in product_modules().items()
                if not name.startswith(REGISTRY) for hit in step_type_switches(path)]
    assert not switches, "ask the step type (automation.definitions.steps):\n" + "\n".join(switches)


def test_the_switch_finder_finds_switches():
    sample = sample_module(
        'step.type == "loop"\nkind in ("condition", "parallel")\n'
        'raw.get("type") != "human"\nHANDLERS = {"function": f, "agent": g}\n'
        'step_run.step_type == "loop"\nstatus == "loop"\n'
        'SCHEMA = {"function": {}, "condition": {}, "next": {}}\n')
    assert len(step_type_switches(sample)) == 5


def test_the_database_plumbing_knows_no_model():
    """entities/db is shared by every app: Django (DRF for the 503, and psycopg, the
    driver under Django's PostgreSQL backend, for statements the server binds) only."""
    broken = [f"{path.relative_to(ROOT)} imports {name}"
              for path in (ROOT / "entities" / "db").rglob("*.py") for name in imports_of(path)
              if name.split(".")[0] not in STDLIB | {"django", "rest_framework", "psycopg"}
              and not name.startswith("entities.db")]
    assert not broken, "\n".join(broken)


def api_operations():
    """(view class, method, a concrete path) for every operation under /api/, from the
    URL patterns (so endpoints that other modules add are included)."""
    from django.urls import URLPattern, URLResolver, get_resolver

    samples = {"uuid": "00000000-0000-0000-0000-000000000000", "int": "1", "slug": "x",
               "str": "x", "path": "x"}

    def walk(patterns, prefix):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                yield from walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                yield prefix + str(entry.pattern), entry.callback

    for route, callback in walk(get_resolver().url_patterns, "/"):
        view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
        if not route.startswith("/api/") or view_class is None or "(?P" in route:
            continue
        path = re.sub(r"<(?:(\w+):)?\w+>", lambda m: samples[m.group(1) or "str"], route)
        for method in view_class.http_method_names:
            if method != "options" and hasattr(view_class, method):
                yield view_class, method.upper(), path


def test_every_api_operation_has_a_scope():
    """docs/rest-api.md#scopes: every view checks scopes and every method resolves to one
    (declared with `required_scope`, or chosen by method and address)."""
    from rest_framework.permissions import AllowAny

    from automation.api.scopes import HasScope, required_scope
    from automation.models.clients import SCOPES

    operations = list(api_operations())
    assert len(operations) > 30
    problems = []
    for view_class, method, path in operations:
        permissions = view_class().get_permissions()
        if any(isinstance(p, AllowAny) for p in permissions):
            continue  # the token endpoints: nothing to scope before there is a token
        if not any(isinstance(p, HasScope) for p in permissions):
            problems.append(f"{view_class.__name__}: HasScope is not among its permissions")
        if required_scope(view_class, method, path) not in SCOPES:
            problems.append(f"{method} {path} ({view_class.__name__}): no scope")
    assert not problems, problems


def test_the_scope_check_catches_an_unscoped_view():
    from automation.api.base import ApiView
    from automation.api.scopes import required_scope

    class OddApi(ApiView):
        required_scope = {"POST": "superuser"}

    assert required_scope(OddApi, "POST", "/api/odd") is None
    assert required_scope(OddApi, "GET", "/api/odd") == "read"
    assert required_scope(ApiView, "PATCH", "/api/functions/f") == "define"
    assert required_scope(ApiView, "POST", "/api/functions/f/run") == "run"
    assert required_scope(ApiView, "TRACE", "/api/runs") is None
