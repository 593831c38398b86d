"""The package's shape, checked rather than promised: no import cycle, imports only go down
the layers of docs/design.md, and no module or function outgrows a reading.

Imports are read from the source (ast), so imports inside functions and under
``TYPE_CHECKING`` count as much as top-level ones: a cycle hidden in a function still
ties two modules together.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import distillguard

SOURCE = Path(distillguard.__file__).parent
DESIGN = Path(__file__).parents[1] / "docs" / "design.md"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    modules = {}
    for path in SOURCE.rglob("*.py"):
        parts = ("distillguard", *path.relative_to(SOURCE).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The distillguard modules ``module`` imports anywhere in its source.

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, and
    ``pkg`` itself otherwise (a name defined in ``pkg/__init__.py``).
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            submodules = [f"{origin}.{alias.name}" for alias in node.names if f"{origin}.{alias.name}" in modules]
            targets = submodules + ([origin] if len(submodules) < len(node.names) else [])
        else:
            continue
        found.update(t for t in targets if t in modules and t != module)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _layers() -> list[tuple[str, list[str]]]:
    """The layer table of docs/design.md: ``| n | layer | modules |`` rows, lowest first.

    Module patterns are dotted names below ``distillguard``; ``pkg/`` means the package
    and everything in it.
    """
    block = DESIGN.read_text(encoding="utf-8").split("<!-- layers -->")[1]
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|\s*$", block, flags=re.M)
    table = sorted(rows, key=lambda row: int(row[0]))
    return [(name, [m.split("(")[0].strip(" `") for m in modules.split(",")]) for _, name, modules in table]


def _layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int | None:
    relative = module.removeprefix("distillguard").lstrip(".") or "__init__"
    for level, (_, patterns) in enumerate(layers):
        for pattern in patterns:
            if pattern.endswith("/") and (relative == pattern[:-1].replace("/", ".")
                                          or relative.startswith(pattern[:-1].replace("/", ".") + ".")):
                return level
            if relative == pattern.replace("/", "."):
                return level
    return None


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_distillguard_modules():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_every_module_has_a_layer_in_docs_design():
    layers = _layers()
    assert len(layers) >= 5, f"docs/design.md's layer table has {len(layers)} rows"
    package_fronts = {"distillguard.lm", "distillguard.lm.probes"}  # docstring-only or re-export packages
    unplaced = [m for m in _modules() if _layer_of(m, layers) is None and m not in package_fronts]
    assert not unplaced, f"modules in no layer of docs/design.md: {sorted(unplaced)}"


def test_imports_only_go_down_the_layers():
    layers = _layers()
    upward = []
    for module, targets in _graph().items():
        own = _layer_of(module, layers)
        for target in targets:
            theirs = _layer_of(target, layers)
            if own is not None and theirs is not None and theirs > own:
                upward.append(f"{module} ({layers[own][0]}) imports {target} ({layers[theirs][0]})")
    assert not upward, "imports against the layers of docs/design.md: " + "; ".join(sorted(upward))


def test_no_module_over_the_line_limit():
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_over_the_line_limit():
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name} ({lines})")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
