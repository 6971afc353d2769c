"""The graph IR (clnet.compiler.trace): op rows, launches, values, phases and graph breaks of a trace."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
from clnet import nn
from clnet.compiler import GraphBreakError, trace
from clnet.core import dispatch


def _mlp():
    clnet.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))


def test_forward_rows_values_and_results(device, rng):
    model = _mlp().to(device)
    x = clnet.tensor(rng.standard_normal((4, 5)).astype(np.float32), device=device)
    graph, y = trace(model, x)
    np.testing.assert_allclose(y.numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)  # the trace ran eagerly
    assert [op.name for op in graph.ops] == ["linear", "relu", "linear"]
    assert graph.inputs[0].tensor is x and graph.inputs[0].kind == "input"
    params = {id(p) for p in model.parameters()}
    assert {id(v.tensor) for v in graph.captured if v.kind == "param"} == params
    first = graph.ops[0]
    assert first.args[0] is graph.inputs[0] and first.outputs[0] is graph.ops[1].inputs[0]
    assert graph.outputs == graph.ops[-1].outputs and graph.output_structure is graph.outputs[0]
    assert [c.name for c in first.children] == ["matmul_ex"]          # nested op rows
    assert first.all_launches() and all(l.op is first.children[0] for l in first.all_launches())
    assert len(graph.kernel_launches) == 3                             # GEMM + bias fused, relu, GEMM
    assert first.qualified_name == "clnet.ops.matmul.linear" and dispatch.OPS["linear"].__wrapped__ is first.fn
    text = str(graph)
    assert "linear(%0" in text and "relu(" in text and "return %" in text


def test_python_values_stay_as_they_are(device):
    x = clnet.ones(2, 3, 4, device=device)
    graph, _ = trace(lambda t: t.transpose(0, 2)[..., 1:, None].sum(dim=(0, 1), keepdim=True), x)
    names = [op.name for op in graph.ops]
    assert names == ["transpose", "getitem", "sum"]
    assert graph.ops[1].args[1] == (Ellipsis, slice(1, None, None), None)
    assert graph.ops[2].kwargs == {"dim": (0, 1), "keepdim": True} or graph.ops[2].args[1:] == ((0, 1), True)


def test_inplace_ops_make_new_values(device):
    def f(t):
        y = t * 2
        y += 1
        return y.relu()
    x = clnet.ones(3, device=device)
    graph, out = trace(f, x)
    mul, add_, relu = graph.ops
    assert add_.name == "add_" and add_.outputs[0] is not mul.outputs[0]
    assert add_.outputs[0].tensor is mul.outputs[0].tensor       # the same tensor object, a new Value
    assert relu.inputs[0] is add_.outputs[0]
    assert np.allclose(out.numpy(), 3.0)


def test_training_step_phases(device, rng):
    model = _mlp().to(device)
    opt = clnet.optim.SGD(model.parameters(), lr=0.1)
    x = clnet.tensor(rng.standard_normal((4, 5)).astype(np.float32), device=device)
    t = clnet.tensor(rng.standard_normal((4, 3)).astype(np.float32), device=device)

    def step(x, t):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), t)
        loss.backward()
        opt.step()
        return loss
    graph, loss = trace(step, x, t)
    phases = {op.phase for op in graph.ops}
    assert phases == {"forward", "backward"}
    assert any(l.phase == "optimizer" for l in graph.kernel_launches)
    assert any(op.name == "mse_loss" and op.phase == "forward" for op in graph.ops)
    assert any(op.name == "matmul_ex" and op.phase == "backward" for op in graph.ops)
    assert graph.outputs[0].tensor is loss and not graph.breaks


def test_graph_breaks_are_recorded_or_raise(device):
    def f(t):
        s = t.sum()
        if s.item() > 0:   # data-dependent Python control flow
            return t * 2
        return t
    x = clnet.ones(3, device=device)
    graph, _ = trace(f, x)
    assert len(graph.breaks) == 1 and "test_compiler_trace.py" in graph.breaks[0].where
    with pytest.raises(GraphBreakError, match="test_compiler_trace.py"):
        trace(f, x, fullgraph=True)


def test_random_launches_refresh_their_counters(device):
    x = clnet.ones(64, device=device)
    graph, _ = trace(lambda t: nn.functional.dropout(t, 0.5), x)
    philox = [l for l in graph.kernel_launches if l.name.startswith("philox")]
    assert len(philox) == 1 and philox[0].refresh is not None
    before = clnet.ops.random.get_rng_state()
    fresh = philox[0].refresh()
    assert set(fresh) == {3, 4, 5, 6} and clnet.ops.random.get_rng_state() != before  # the stream advanced


def test_uploads_are_rows_and_constants(device):
    graph, _ = trace(lambda t: t + clnet.tensor([1.0, 2.0, 3.0], device=device), clnet.ones(3, device=device))
    uploads = [row for row in graph.launches if not hasattr(row, "kernel")]
    assert len(uploads) == 1 and list(uploads[0].host) == [1.0, 2.0, 3.0]


def test_every_op_name_is_registered_once():
    assert len(dispatch.OPS) > 100
    for name, fn in dispatch.OPS.items():
        assert callable(fn) and getattr(fn, "op_name", name) == name
