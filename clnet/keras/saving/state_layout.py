"""Where each layer's variables sit in a Keras 3 weights file: the paths Keras's saving walk gives.

Keras visits the model, then its children: for Sequential and functional models first `layers` (the
model's layer list), then every attribute in name order (public names first, then `_private` ones)
that holds a layer, the optimizer, or a list/tuple/dict of them. Inside a list, an item is named by
its class in snake_case, numbered from the second on (`dense`, `dense_1`, `conv2d`...), not by its
layer name, so files do not depend on the names a session happened to generate. An object reached
twice is saved once, at the first path. clnet follows the same walk over the attributes its layers
track (`_tracked`) and the public properties their classes add, so a file written by either side names
the same variables the same way.
"""
from __future__ import annotations

from ..utils import snake_case
from .object_registration import builtin_objects


def is_layer(obj) -> bool:
    return hasattr(obj, "_own_weights") and hasattr(obj, "_tracked")


def _is_optimizer(obj) -> bool:
    return hasattr(obj, "state_arrays") and hasattr(obj, "load_state_arrays")


def _name_key(name):
    return f"~{name}" if name.startswith("_") else name


def _join(path, name):
    return f"{path}/{name}" if path else name


def _children(obj):
    """(attribute name, value) pairs in Keras's visiting order."""
    models = builtin_objects("models")
    graph_model = isinstance(obj, tuple(models[k] for k in ("Sequential", "Functional") if k in models))
    is_model = "Model" in models and isinstance(obj, models["Model"])
    out = []
    if graph_model:
        out.append(("layers", list(obj.layers)))
    names = {name for name, _ in obj.__dict__.get("_tracked", [])} | _own_properties(obj)
    if is_model:
        names.add("layers")
        if getattr(obj, "optimizer", None) is not None:
            names.add("optimizer")
    for name in sorted(names, key=_name_key):
        if name == "layers" and is_model:
            value = list(obj.layers)
        else:
            try:
                value = getattr(obj, name, None)
            except Exception:  # noqa: BLE001  (a property that cannot be read now holds nothing to save)
                continue
        out.append((name, value))
    return out


_BASE_NAMES = {}


def _base_names():
    """Attribute names every clnet model has (what Keras's walk skips: its reference Layer's names)."""
    if not _BASE_NAMES:
        for cls in builtin_objects("models").values():
            _BASE_NAMES.update(dict.fromkeys(dir(cls)))
    return _BASE_NAMES


def _own_properties(obj):
    """Public properties a layer class adds (MultiHeadAttention's `query_dense` returning its `_query_dense`):
    Keras's walk meets them in dir() before the private attribute, so the variables sit under their name."""
    base = _base_names()
    return {name for name in dir(type(obj)) if not name.startswith("_") and name not in base and
            isinstance(getattr(type(obj), name, None), property)}


def saveables(model):
    """[(path, object)] for every layer (the model included) and the optimizer, in Keras's order."""
    found, visited = [], set()

    def visit(obj, path):
        if id(obj) in visited:
            return
        visited.add(id(obj))
        found.append((path, obj))
        if not is_layer(obj):
            return
        for name, child in _children(obj):
            if is_layer(child) or _is_optimizer(child):
                visit(child, _join(path, name))
            elif isinstance(child, (list, tuple, dict)):
                visit_container(child, _join(path, name), set())

    def visit_container(container, path, seen):
        if id(container) in seen:
            return
        seen.add(id(container))
        used = {}
        for item in (container.values() if isinstance(container, dict) else container):
            if is_layer(item) or _is_optimizer(item):
                visit(item, _join(path, _unique(snake_case(type(item).__name__), used)))
            elif isinstance(item, (list, tuple, dict)):
                visit_container(item, _join(path, _unique("container", used)), seen)

    visit(model, "")
    return found


def _unique(name, used):
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def own_variables(layer):
    """A layer's own variables in Keras's saving order: those created trainable first, then the others."""
    own = list(layer._own_weights)
    return [v for v in own if v._keras_trainable] + [v for v in own if not v._keras_trainable]


def uses_default_hooks(layer) -> bool:
    """Whether the layer keeps Layer's save_own_variables/load_own_variables (else its own run)."""
    for method in ("save_own_variables", "load_own_variables"):
        fn = getattr(type(layer), method, None)
        if fn is not None and getattr(fn, "__qualname__", "") != f"Layer.{method}":
            return False
    return True
