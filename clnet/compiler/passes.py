"""Graph passes run before a traced graph becomes a replay plan: each one rewrites graph.launches and
keeps results equal to eager execution (to float32 rounding).

    optimize(graph, visible)   runs them in order; `visible` holds the id() of every buffer something
                               outside the graph can see (inputs, outputs, captured tensors, .grad)

fusion.py    constant folding of fills, pow(x, 1|2) as products, dead-code elimination, GEMM epilogues, GEMM
             groups (the elementwise launches and Adam/SGD updates using a GEMM's result run in its epilogue:
             a weight is updated where its gradient is made), elementwise fusion (one kernel per group)
planning.py  buffer planning: internal buffers whose lifetimes do not overlap share memory
"""
from __future__ import annotations

from . import fusion, planning


def optimize(graph, visible) -> dict:
    """Rewrite the graph's launches in place; returns what changed (launch counts, planned bytes)."""
    report = fusion.run(graph, visible)
    report.update(planning.plan(graph, visible))
    graph.pass_report = report
    return report
