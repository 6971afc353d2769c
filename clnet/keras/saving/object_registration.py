"""The names saved configs may use: the user's objects and Keras's own.

User objects come from `@register_keras_serializable(package, name)` (saved as "package>name"),
`get_custom_objects()` (a live dict) and `custom_object_scope({...})` (only while the `with` lasts).
Keras's own classes and functions are entered here by the modules that define them
(`register_builtins("layers", ...)`), so this module imports nothing from clnet.keras: it sits at the
bottom, and saving code looks classes up here instead of importing the layers and models that use it.
"""
from __future__ import annotations

import inspect
import threading

GLOBAL_CUSTOM_OBJECTS: dict = {}
GLOBAL_CUSTOM_NAMES: dict = {}
_BUILTINS: dict = {}  # category ("layers", "losses", ...) -> {name: object}
_scopes = threading.local()


class CustomObjectScope:
    """`with custom_object_scope({"MyLayer": MyLayer}):` makes those names loadable inside the block."""

    def __init__(self, custom_objects):
        self.custom_objects = dict(custom_objects or {})

    def __enter__(self):
        _scope_stack().append(self.custom_objects)
        return self

    def __exit__(self, *exc):
        _scope_stack().pop()


custom_object_scope = CustomObjectScope


def _scope_stack():
    if not hasattr(_scopes, "stack"):
        _scopes.stack = []
    return _scopes.stack


def scoped_custom_objects() -> dict:
    """The objects of every open custom_object_scope (inner scopes win)."""
    merged = {}
    for objects in _scope_stack():
        merged.update(objects)
    return merged


def get_custom_objects() -> dict:
    """The live global dict of custom objects (register_keras_serializable adds to it)."""
    return GLOBAL_CUSTOM_OBJECTS


def register_keras_serializable(package="Custom", name=None):
    """Decorator: save and load a custom class or function as "package>name" without custom_objects=."""
    def decorate(obj):
        key = f"{package}>{name if name is not None else obj.__name__}"
        if inspect.isclass(obj) and not hasattr(obj, "get_config"):
            raise ValueError("Cannot register a class that does not have a get_config() method.")
        GLOBAL_CUSTOM_OBJECTS[key] = obj
        GLOBAL_CUSTOM_NAMES[obj] = key
        return obj
    return decorate


def get_registered_name(obj) -> str:
    """"package>name" for a registered object, else its Python name."""
    try:
        return GLOBAL_CUSTOM_NAMES[obj]
    except (KeyError, TypeError):
        return obj.__name__


def is_registered(obj) -> bool:
    try:
        return obj in GLOBAL_CUSTOM_NAMES
    except TypeError:
        return False


def get_registered_object(name, custom_objects=None, module_objects=None):
    """The object saved under `name`: from an open scope, the global registry, custom_objects, then
    module_objects (None when nothing has that name)."""
    for source in (scoped_custom_objects(), GLOBAL_CUSTOM_OBJECTS, custom_objects or {}, module_objects or {}):
        if name in source:
            return source[name]
    return None


# --- Keras's own objects ----------------------------------------------------------------------------
def register_builtins(category: str, objects, aliases: dict | None = None) -> None:
    """Enter the built-in classes/functions of `category` ("layers", "losses", "metrics", ...) by name."""
    table = _BUILTINS.setdefault(category, {})
    for obj in objects:
        table[obj.__name__] = obj
    table.update(aliases or {})


def register_builtin(category: str, name: str, obj) -> None:
    _BUILTINS.setdefault(category, {})[name] = obj


def builtin_objects(category: str) -> dict:
    """The built-in objects of `category` by name (empty if that module was never imported)."""
    return _BUILTINS.get(category, {})


def builtin_name(category: str, obj):
    """The name `obj` has among the built-ins of `category`, or None if it is not one of them."""
    for name, known in _BUILTINS.get(category, {}).items():
        if known is obj:
            return name
    return None
