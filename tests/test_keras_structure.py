"""clnet.keras's module structure (issue 14 item 7): no import circle between its modules, and no import of a
clnet module inside a function (a late import that hides a circle). Optional third-party packages (pydot,
scikit-learn, tensorboard) may still be imported where they are used, as Keras does."""
import ast
import pathlib

import clnet

ROOT = pathlib.Path(clnet.__file__).parent
KERAS = ROOT / "keras"


def _module_name(path):
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(module, is_package, node):
    """The absolute module an ImportFrom names (relative imports resolved against `module`)."""
    if node.level == 0:
        return node.module
    package = module.split(".")
    base = package[:len(package) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _keras_modules():
    return {_module_name(p): p for p in KERAS.rglob("*.py")}


def _imports(module, path, modules):
    """(top-level clnet.keras imports, late clnet imports) of one module: `from pkg import name` counts as
    importing pkg.name when that is a module, else as importing pkg."""
    tree = ast.parse(path.read_text())
    top, late = set(), []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = _resolve(module, path.name == "__init__.py", node)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        inside = node.col_offset > 0
        for name in names:
            if name and name.startswith("clnet"):
                if inside:
                    late.append((name, node.lineno))
                elif name.startswith("clnet.keras"):
                    top.add(name)
    return top, late


def test_no_clnet_import_inside_a_function():
    found = []
    modules = _keras_modules()
    for module, path in modules.items():
        found += [f"{path.relative_to(ROOT.parent)}:{line} imports {name}"
                  for name, line in _imports(module, path, modules)[1]]
    assert not found, "late imports hide import circles:\n" + "\n".join(found)


def test_no_import_circle_between_keras_modules():
    modules = _keras_modules()
    graph = {}
    for module, path in modules.items():
        deps = set()
        for name in _imports(module, path, modules)[0]:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                deps.add(name)
        graph[module] = deps
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import circles in clnet.keras:\n" + "\n".join(cycles)
