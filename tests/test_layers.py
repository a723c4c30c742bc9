"""The package's layers, read from the source (no import needed): the numpy core imports no
Spark, Arrow or pandas, the layers import only downwards, and no two modules import each
other when they are loaded."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "spark_em"

# Each layer and what it may import of spark_em (besides itself).  The top level is the
# public API (estimator, model, params, summary, errors, progress).
LAYERS = {
    "core": {"errors"},
    "data": {"core", "errors", "progress"},
    "engine": {"core", "data", "errors", "progress"},
    "io": {"core", "data", "errors", "summary"},
    "cli": None,  # the jobs may use everything
}
CORE_THIRD_PARTY = {"numpy", "scipy"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    """Modules (absolute names) imported by ``path`` when it runs (imports under ``if
    TYPE_CHECKING``, for annotations only, are not counted); ``top_level_only``: those run
    when the module is loaded (not inside functions)."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    modules = _modules()

    def visit(node, at_load: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if top_level_only and not at_load:
                visit(child, at_load)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                target = child.module or ""
                if child.level:
                    target = _resolve(module, is_package, child.level, child.module)
                for a in child.names:  # "from . import x": x may be a module
                    sub = f"{target}.{a.name}" if target else a.name
                    found.add(sub if sub in modules else target)
            visit(child, at_load)

    visit(tree, True)
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "spark_em" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else "top"


def test_the_core_imports_only_numpy_scipy_and_itself():
    for module, path in _modules().items():
        if _layer(module) != "core":
            continue
        for imported in _imports(path, module, top_level_only=False):
            root = imported.split(".")[0]
            if root == "spark_em":
                assert _layer(imported) == "core" or imported == "spark_em.errors", (
                    f"{module} imports {imported}"
                )
            else:
                assert root in CORE_THIRD_PARTY or root in sys.stdlib_module_names, (
                    f"{module} imports {imported}: the core is numpy and scipy only"
                )


@pytest.mark.parametrize("layer", [name for name, allowed in LAYERS.items() if allowed is not None])
def test_layers_import_only_downwards(layer):
    allowed = LAYERS[layer] | {layer}
    for module, path in _modules().items():
        if _layer(module) != layer:
            continue
        for imported in _imports(path, module, top_level_only=False):
            target = _layer(imported)
            if target is None:
                continue
            name = imported.split(".")[1] if target == "top" else target
            assert name in allowed, f"{module} ({layer}) imports {imported}"


def test_no_import_cycles_when_modules_load():
    modules = _modules()
    graph = {
        m: {i for i in _imports(p, m, top_level_only=True) if i in modules and i != m}
        for m, p in modules.items()
    }
    # a package's __init__ is loaded before its submodules: importing a submodule imports
    # its parents, which is not a cycle between two modules
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n) :] + [n]
                raise AssertionError(
                    "modules import each other at load time: " + " -> ".join(cycle)
                )
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
