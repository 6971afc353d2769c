"""Static graphs: tracing a function into a graph (graph.py, trace.py), optimising it and replaying it.

    graph, result = clnet.compiler.trace(fn, *args)   # the IR: ops, launches, values, breaks
    print(graph)

    step = clnet.compile(step)                        # api.py: warm-up, trace, replay per signature

`clnet.compile` / `clnet.function` (api.py) and clnet.jit build on these. (The package is `compiler`, not
`compile`, because `clnet.compile` is the torch.compile-style function.)
"""
from .graph import Break, Graph, Launch, OpNode, Upload, Value  # noqa: F401
from .trace import GraphBreakError, Recorder, flatten_tensors, trace  # noqa: F401
from .api import CompiledFunction, CompiledModule, CompileWarning, compile, explain, function  # noqa: F401
