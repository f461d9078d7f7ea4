"""The code's shape holds: runner/ and judges/ import in layers, with no cycle and no import that
goes up, and no module grows past 800 lines. Imports inside functions count too: they are still
dependencies."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("runner", "judges")
MAX_LINES = 800

# Top to bottom: a module may import its own layer or a lower one.
LAYERS = [
    ("entry points", ("runner.cli", "runner.app", "runner.sweep", "runner.validate", "runner.outcomes",
                      "runner.models.cli", "judges.cli", "runner.results")),
    ("measure, grade, decide, report, track", ("runner.measure", "judges", "runner.decide", "runner.report",
                                               "runner.track")),
    ("store and metrics", ("runner.store", "runner.metrics")),
    ("backends, models, config and interrupts", ("runner.backends", "runner.models", "runner.config",
                                                 "runner.interrupts")),
]


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {_module(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # `from runner.store import jobdir` depends on the module jobdir
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if sub in mods else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def layer_of(module: str) -> int:
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    assert best is not None or module in PACKAGES, f"{module} belongs to no layer: add it to LAYERS"
    return best[0] if best else len(LAYERS)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_import_goes_up_a_layer():
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})"
              for m, deps in import_graph().items() for d in deps if layer_of(d) < layer_of(m)]
    assert upward == []


def test_measuring_code_does_not_import_the_graders():
    """The app measures, then grades: nothing under runner/measure reaches judges/."""
    graph = import_graph()
    reached, todo = set(), [m for m in graph if m.startswith("runner.measure")]
    while todo:
        m = todo.pop()
        for d in graph[m] - reached:
            reached.add(d)
            todo.append(d)
    assert not [m for m in reached if m.startswith("judges")]


def test_the_checks_would_catch_a_cycle_and_an_upward_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert layer_of("runner.store.summary") > layer_of("judges.quality")  # store importing judges is upward


def test_no_module_is_over_800_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


# The composed config stays at the edge: runner/config/plan.py turns it into the job's plan, and
# the code below takes the plan (or the part of it it uses), never a DictConfig.
CONFIG_EDGE = ("runner.config", "runner.app", "runner.sweep", "runner.models.cli")


def test_omegaconf_and_hydra_stay_at_the_edge():
    found = []
    for name, path in modules().items():
        if any(name == edge or name.startswith(edge + ".") for edge in CONFIG_EDGE):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                imported = [node.module or ""]
            else:
                imported = []
            if any(m.split(".")[0] in ("omegaconf", "hydra") for m in imported):
                found.append(f"{name}:{node.lineno} imports {', '.join(imported)}")
            if isinstance(node, ast.Name | ast.Attribute) and getattr(node, "id", getattr(node, "attr", "")) in (
                    "DictConfig", "OmegaConf", "ListConfig"):
                found.append(f"{name}:{node.lineno} uses {getattr(node, 'id', getattr(node, 'attr', ''))}")
    assert not found, "the config is read at the edge only (runner/config/plan.py):\n" + "\n".join(found)
