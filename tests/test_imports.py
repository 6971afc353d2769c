"""The import graph: layers only look down (DESIGN.md section 1).

Every `import` statement in clnet/ is read with `ast` (module level, class bodies and function bodies
alike), so an import moved into a function cannot hide a circle. The core layers (backend, core, ops,
autograd, tensor, gradient_tape) must form no circle and, from clnet.core up, hold no import inside a
function at all; each of them may import only from layers below it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import clnet

ROOT = Path(clnet.__file__).resolve().parent

# layer rank of the core modules: a module may import only modules of a lower or equal rank (equal:
# within its own layer, where the order is checked by the absence of circles)
LAYERS = [
    ("clnet.errors", "clnet.dtypes", "clnet.size"),
    ("clnet.backend",),
    ("clnet.core",),
    ("clnet.ops",),
    ("clnet.autograd",),
    ("clnet.tensor",),
    ("clnet.gradient_tape",),
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(current: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _imports(name: str, path: Path, modules: dict):
    """(imported clnet module, line, inside a function?) for every import statement of `name`."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == "clnet":
                        found.append((_closest(alias.name, modules), child.lineno, in_function))
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(name, is_package, child.level, child.module)
                if base.split(".")[0] != "clnet":
                    continue
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    found.append((sub if sub in modules else _closest(base, modules), child.lineno, in_function))
            visit(child, inner)
    visit(tree, False)
    return found


def _closest(dotted: str, modules: dict) -> str:
    while dotted and dotted not in modules:
        dotted = dotted.rpartition(".")[0]
    return dotted


def _graph():
    modules = _modules()
    edges = {}
    for name, path in modules.items():
        for target, line, late in _imports(name, path, modules):
            if target and target != name:
                edges.setdefault(name, []).append((target, line, late))
    return modules, edges


def _rank(name: str):
    for i, prefixes in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return i
    return None


def _cycles(nodes, edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w, _, _ in edges.get(v, ()):
            if w not in nodes:
                continue
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            strong(v)
    return out


def _core(modules):
    return {m for m in modules if _rank(m) is not None and m != "clnet"}


def test_core_has_no_import_circle():
    modules, edges = _graph()
    core = _core(modules)
    assert _cycles(core, edges) == []


def test_core_layers_only_look_down():
    modules, edges = _graph()
    bad = [f"{m} imports {t} (line {line})" for m in _core(modules) for t, line, _ in edges.get(m, ())
           if _rank(t) is not None and t != "clnet" and _rank(t) > _rank(m)]
    assert bad == []


def test_core_imports_nothing_inside_functions():
    """From clnet.core up (the backend defers a few imports of its own to keep `import clnet` fast)."""
    modules, edges = _graph()
    late = [f"{m}:{line} imports {t}" for m in _core(modules) if _rank(m) >= _rank("clnet.core")
            for t, line, is_late in edges.get(m, ()) if is_late and t.startswith("clnet")]
    assert late == []


def test_the_walker_sees_late_imports(tmp_path):
    """The checks above cannot pass vacuously: a function-level import is reported as one."""
    path = tmp_path / "mod.py"
    path.write_text("def f():\n    from .ops import creation\n")
    modules = {"clnet.x": path, "clnet.ops.creation": None}
    assert _imports("clnet.x", path, modules) == [("clnet.ops.creation", 2, True)]
    assert _cycles({"a", "b"}, {"a": [("b", 1, False)], "b": [("a", 2, True)]}) == [["a", "b"]]


@pytest.mark.parametrize("module", ["clnet.core.storage", "clnet.core.tape", "clnet.core.dispatch"])
def test_core_imports_no_higher_layer(module):
    modules, edges = _graph()
    assert all(_rank(t) <= _rank(module) for t, _, _ in edges.get(module, ()) if t != "clnet")
