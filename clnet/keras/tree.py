"""keras.tree: nested structures (lists, tuples, namedtuples, dicts) of leaves, as Keras walks them.

Dicts are walked in sorted-key order (Keras's rule, so `flatten({"b": 1, "a": 2}) == [2, 1]`); None is
a leaf. Models use these to accept and return lists and dicts of tensors.
"""
from __future__ import annotations

from collections.abc import Mapping


def is_nested(structure) -> bool:
    return isinstance(structure, (list, tuple, Mapping))


def _children(structure):
    if isinstance(structure, Mapping):
        return [structure[k] for k in sorted(structure)]
    return list(structure)


def flatten(structure) -> list:
    """Every leaf, depth first."""
    if not is_nested(structure):
        return [structure]
    out = []
    for child in _children(structure):
        out.extend(flatten(child))
    return out


def _rebuild(structure, values):
    if isinstance(structure, Mapping):
        keys = sorted(structure)
        rebuilt = dict(zip(keys, values))
        return type(structure)((k, rebuilt[k]) for k in structure) if type(structure) is not dict else \
            {k: rebuilt[k] for k in structure}
    if isinstance(structure, tuple) and hasattr(structure, "_fields"):
        return type(structure)(*values)
    return type(structure)(values)


def pack_sequence_as(structure, flat_sequence):
    """The leaves of `flat_sequence` in the shape of `structure`."""
    flat_sequence = list(flat_sequence)
    expected = len(flatten(structure))
    if expected != len(flat_sequence):
        raise ValueError(f"The structure has {expected} leaves, but {len(flat_sequence)} values were given")
    position = [0]

    def build(s):
        if not is_nested(s):
            value = flat_sequence[position[0]]
            position[0] += 1
            return value
        return _rebuild(s, [build(child) for child in _children(s)])
    return build(structure)


def map_structure(fn, *structures):
    """fn applied leaf by leaf (several structures of the same shape give fn several arguments)."""
    if not structures:
        raise TypeError("map_structure needs at least one structure")
    for other in structures[1:]:
        assert_same_structure(structures[0], other)
    flats = [flatten(s) for s in structures]
    return pack_sequence_as(structures[0], [fn(*leaves) for leaves in zip(*flats)])


def assert_same_structure(a, b, check_types=False):
    if is_nested(a) != is_nested(b):
        raise ValueError(f"The two structures don't have the same nested structure: {a!r} and {b!r}")
    if not is_nested(a):
        return
    if isinstance(a, Mapping) != isinstance(b, Mapping) or len(a) != len(b) or \
            (isinstance(a, Mapping) and sorted(a) != sorted(b)):
        raise ValueError(f"The two structures don't have the same nested structure: {a!r} and {b!r}")
    for x, y in zip(_children(a), _children(b)):
        assert_same_structure(x, y, check_types)


def traverse(fn, structure, top_down=True):
    """fn on every node (None keeps the node, anything else replaces it)."""
    if top_down:
        replaced = fn(structure)
        if replaced is not None:
            return replaced
    if is_nested(structure):
        structure = _rebuild(structure, [traverse(fn, c, top_down) for c in _children(structure)])
    if not top_down:
        replaced = fn(structure)
        if replaced is not None:
            return replaced
    return structure
