"""The graph IR that tracing produces: what a function did on the device, at two levels.

    Graph.ops       OpNode rows in call order: op name, arguments (tensors as Values), results. What
                    ONNX export and jit.save read. An op called inside another op is a child of it
                    (`linear` has its `matmul_ex` child), so a reader takes the level it understands.
    Graph.launches  Launch rows in order: kernel, sizes, arguments (buffers, offsets, scalars), and the
                    op that issued them. What replay needs.
    Graph.values    every tensor the trace saw, as a Value: its shape/dtype/device and its kind:
                    "input" (an argument of the traced function), "param" (a captured leaf that requires
                    grad, e.g. a Module's Parameter), "constant" (any other captured tensor: buffers,
                    running statistics, tensors made before the trace), "intermediate" (made in the trace).
    Graph.outputs   the Values of the tensors the function returned, in order.
    Graph.breaks    where the function read device values back to the host (.item(), .numpy(), print,
                    Python `if` on a tensor): graph breaks.

Values are SSA: an op that changes a tensor in place (add_, copy_, x[i] = v) produces a new Value for
the same tensor object; later uses refer to the new one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..core.storage import TensorBase


@dataclass(eq=False)
class Value:
    """One tensor value seen by the trace (`%id` when printed)."""
    id: int
    shape: tuple
    dtype: object
    device: object
    kind: str                      # "input", "param", "constant", "intermediate"
    tensor: TensorBase | None = None  # the tensor object (dropped for intermediates by Graph.release)
    producer: "OpNode | None" = None  # the op that made it (None for inputs and captured tensors)
    index: int = 0                 # its position among the graph's inputs (inputs only)
    output_index: int = -1         # its position among the graph's outputs (-1: not an output)
    grad_at_capture: object = None  # a captured tensor's .grad when the trace first saw it

    def __repr__(self):
        return f"%{self.id}"

    def describe(self) -> str:
        return f"%{self.id}: {self.dtype.name}{list(self.shape)}"


@dataclass(eq=False)
class OpNode:
    """One call of an @op function."""
    name: str
    fn: object                      # the op function (its module and name: fn.__module__, fn.__qualname__)
    args: tuple                     # positional arguments, tensors replaced by Values (lists kept as lists)
    kwargs: dict                    # keyword arguments, likewise
    inputs: list                    # the Values among the arguments, in order
    outputs: list = field(default_factory=list)   # Values of the tensors in the result, in order
    result: object = None           # the result's structure with tensors replaced by Values
    phase: str = "forward"          # "forward", "backward" (autograd's rules), "optimizer"
    parent: "OpNode | None" = None
    children: list = field(default_factory=list)
    launches: list = field(default_factory=list)  # Launch rows issued by this op itself (not children)

    @property
    def qualified_name(self) -> str:
        """`module.function` of the op: jit.load can call it again by this name."""
        return f"{self.fn.__module__}.{self.fn.__qualname__}"

    def all_launches(self) -> list:
        """This op's launches and its children's, in order."""
        out = []
        for item in self._order:
            out.extend(item.all_launches() if isinstance(item, OpNode) else [item])
        return out

    def __post_init__(self):
        self._order = []  # children and own launches interleaved, in call order

    def __repr__(self):
        return f"<op {self.name}>"


@dataclass(eq=False)
class Launch:
    """One kernel launch: dispatch.launch's arguments, as traced."""
    device: object
    kernel: object                  # backend.programs.Kernel (shared with eager calls; .kernel_name, .params)
    global_size: tuple
    local_size: tuple | None   # None: the driver picks the work-group size
    args: list                      # buffers, offsets, sizes, scalars, cl.LocalMemory, as passed
    refresh: object = None          # callable -> {position: value}, for host-state arguments (RNG, steps)
    op: OpNode | None = None        # the innermost op that issued it (None: outside any op)
    phase: str = "forward"
    note: object = None             # what the kernel computes, when its op said (elementwise.EwNote)

    @property
    def name(self) -> str:
        """The kernel's function name (e.g. "ew", "gemm_cpu")."""
        return self.kernel.kernel_name


@dataclass(eq=False)
class HostStep:
    """Host bookkeeping (dispatch.host_step) that a replay runs again at this point."""
    fn: object
    op: OpNode | None = None


@dataclass(eq=False)
class Guard:
    """A host check of device values (dispatch.guard) on a buffer the graph does not write before it
    (an argument or captured tensor): a replay reads `mem` again and runs `check` before its launches."""
    device: object
    mem: object                     # the buffer as traced (a replay rebinds it like a launch argument)
    byte_offset: int
    like: object                    # an empty array of the shape and dtype read
    check: object                   # check(array) raises on bad values
    op: OpNode | None = None


@dataclass(eq=False)
class Upload:
    """A host->device copy in the trace (a constant made inside the function)."""
    device: object
    buf: object
    host: object                    # a private copy of the array
    op: OpNode | None = None


@dataclass(eq=False)
class Break:
    """A device->host read inside the trace: the graph cannot replay what Python did with the value."""
    op: OpNode | None
    where: str                      # file:line of the user code that asked


class Graph:
    """A traced function: ops, launches, values, breaks (see the module docstring)."""

    def __init__(self):
        self.values: list = []
        self.inputs: list = []
        self.outputs: list = []
        self.ops: list = []
        self.launches: list = []     # Launch, Upload, HostStep and Guard rows, in order
        self.breaks: list = []
        self.output_structure = None  # the function's result with tensors replaced by Values
        self.allocated = {}          # id(buffer) -> buffer of every tensor made while tracing
        self.managed = set()         # id() of Python objects whose state replay keeps up to date

    @property
    def captured(self) -> list:
        """Values of tensors the function used but did not make (params, buffers, constants)."""
        return [v for v in self.values if v.kind in ("param", "constant")]

    def walk(self, ops=None):
        """Every op row, depth first (parents before their children)."""
        for node in self.ops if ops is None else ops:
            yield node
            yield from self.walk(node.children)

    @property
    def kernel_launches(self) -> list:
        return [x for x in self.launches if isinstance(x, Launch)]

    def release(self) -> None:
        """Drop the references to intermediate tensors (their buffers stay referenced by launches)."""
        for v in self.values:
            if v.kind == "intermediate":
                v.tensor = None

    def __str__(self):
        lines = ["graph(" + ", ".join(v.describe() for v in self.inputs) + "):"]
        for v in self.captured:
            lines.append(f"    {v.describe()} = {v.kind}")
        for node in self.ops:
            _print_op(node, lines, "    ")
        lines.append("    return " + ", ".join(repr(v) for v in self.outputs))
        if self.breaks:
            lines.append(f"    # {len(self.breaks)} graph break(s): " + "; ".join(b.where for b in self.breaks))
        return "\n".join(lines)

    __repr__ = __str__


def _fmt(a) -> str:
    if isinstance(a, (list, tuple)):
        inner = ", ".join(_fmt(x) for x in a)
        return f"[{inner}]" if isinstance(a, list) else f"({inner}{',' if len(a) == 1 else ''})"
    if isinstance(a, Value):
        return repr(a)
    if isinstance(a, float):
        return repr(a)
    if hasattr(a, "name") and hasattr(a, "itemsize"):  # a dtype
        return a.name
    return repr(a) if not hasattr(a, "spec") else f"'{a.spec}'"


def _print_op(node: OpNode, lines: list, indent: str) -> None:
    outs = ", ".join(v.describe() for v in node.outputs) or "_"
    args = [_fmt(a) for a in node.args] + [f"{k}={_fmt(v)}" for k, v in node.kwargs.items()]
    tag = "" if node.phase == "forward" else f"  # {node.phase}"
    lines.append(f"{indent}{outs} = {node.name}({', '.join(args)}){tag}")
