"""clnet's core, below the ops: storage, the tape, and dispatch (the one launch path).

    storage   TensorBase: buffer, offset, shape, strides, dtype, device, version (no arithmetic)
    tape      grad mode (per thread), Node/Edge, record(): what ops hang on their outputs
    dispatch  launch()/upload()/download() and @op: run now, or also report to a recorder (tracing)

Layers only look down: core imports backend, dtypes and errors; the ops import core; autograd and
the Tensor methods import the ops. docs/architecture.md walks `a + b` from the operator to the kernel.
"""
from . import dispatch, storage, tape  # noqa: F401
