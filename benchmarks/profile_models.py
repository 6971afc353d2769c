"""Where the time of bench_models.py's training steps goes, clnet beside PyTorch, per kernel family.

clnet: the step is compiled (clnet.compile) twice, once without the graph passes (the launches eager
execution makes: the "eager" columns) and once with them (what clnet+compile replays); each plan is
then enqueued on a profiling queue of the same device and every launch's device time read from its
event (OpenCL CL_PROFILING_COMMAND_START/END; in-order, all launches of a step enqueued, one finish),
median over --reps steps. The whole step is timed too: wall time of eager calls, of compiled calls, and
of the plan's enqueue loop + finish (its difference from the sum of kernel times is launch overhead
and device idle time). GEMM rows get GFLOP/s from their M, N, K (launch arguments 0-2) and batch.

PyTorch: torch.profiler over --reps steps (default threads), each op's self CPU time per step;
aten::mm/addmm/bmm/... FLOPs from with_flops.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/profile_models.py --model lstm
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/profile_models.py --model gpt --reps 3
    ... --model lstm --pack-per-step    # W_hh packed at every step, as before clnet.ops.matmul.pack_b
"""
from __future__ import annotations

import argparse
import time
import warnings
from collections import defaultdict

import numpy as np
import pyopencl as cl

from common import header, load_torch, open_device
from bench_models import WORKLOADS, make_step, torch_reference

import clnet  # noqa: E402
from clnet.compiler.api import CompiledFunction, CompileWarning  # noqa: E402
from clnet.compiler.graph import Launch, Upload  # noqa: E402


# --- families --------------------------------------------------------------------------------------
def family(kernel: str, op: str) -> str:
    """A kernel launch's family from its kernel name and the innermost op that issued it."""
    if kernel == "gemm_cpu" or kernel.startswith("gemm"):
        return "gemm"
    if kernel == "pack":
        return "gemm operand pack"
    if kernel.startswith("attention"):
        return "attention (" + kernel.replace("attention_", "") + ")"
    if kernel.startswith(("lstm_", "gru_", "rnn_")):
        return "rnn cell " + ("fwd" if kernel.endswith("forward") else "bwd")
    if kernel.startswith("norm_"):
        return "layernorm"
    if kernel in ("cross_entropy", "cross_entropy_backward", "class_loss_reduce"):
        return "cross entropy"
    if kernel.startswith("softmax"):
        return "softmax"
    if kernel.endswith("_step"):
        return "optimizer"
    if kernel.startswith(("adv_", "dim_", "plan_", "mask_")):
        return "embedding/gather/scatter"
    if kernel.startswith("reduce"):
        return "reductions"
    if kernel == "upload":
        return "upload"
    if "gelu" in op:
        return "gelu"
    if op in ("contiguous", "copy_", "clone", "concat", "stack", "cast", "to") or "copy" in kernel:
        return "copies"
    return "elementwise"


def torch_family(name: str) -> str:
    n = name.replace("aten::", "")
    if n in ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_addmm_activation"):
        return "gemm"
    if "attention" in n or n.startswith("_flash") or n.startswith("_scaled_dot"):
        return "attention"
    if "lstm" in n or "rnn" in n or n in ("sigmoid", "sigmoid_backward", "tanh", "tanh_backward"):
        return "rnn layer (mkldnn, gemms + cells)"
    if "layer_norm" in n:
        return "layernorm"
    if "log_softmax" in n or "nll_loss" in n or "cross_entropy" in n:
        return "cross entropy"
    if "softmax" in n:
        return "softmax"
    if "gelu" in n:
        return "gelu"
    if "embedding" in n or "index" in n or "scatter" in n or "gather" in n:
        return "embedding/gather/scatter"
    if n.startswith("_foreach") or "adam" in n or n in ("lerp_", "addcmul_", "addcdiv_"):
        return "optimizer"
    if n in ("sum", "norm", "linalg_vector_norm", "mean", "max", "amax"):
        return "reductions"
    if n in ("copy_", "clone", "contiguous", "cat", "stack", "_to_copy", "to", "empty_like"):
        return "copies"
    return "elementwise"


# --- clnet -----------------------------------------------------------------------------------------
def _rows(cstep):
    entry = next(e for e in cstep._entries.values() if e.plan is not None)
    plan, graph = entry.plan, entry.graph
    rows = [r for r in graph.launches if isinstance(r, (Launch, Upload))]
    assert len(rows) == len(plan.steps), (len(rows), len(plan.steps))
    desc = []
    for r, (fn, args) in zip(rows, plan.steps):
        if isinstance(r, Upload):
            desc.append(("upload", "upload", "", 0.0))
            continue
        op = r.op.name if r.op is not None else ""
        flops = 0.0
        if r.name == "gemm_cpu" or r.name.startswith("gemm"):
            M, N, K = (int(a) for a in r.args[:3])
            flops = 2.0 * M * N * K * int(r.global_size[2] if len(r.global_size) > 2 else 1)
        desc.append((r.name, op, r.phase, flops))
    return entry, plan, desc


def _profile_plan(plan, dev, reps):
    """[median device ms per launch], median wall ms of the enqueue loop + finish."""
    q = cl.CommandQueue(dev.context, dev.cl_device, properties=cl.command_queue_properties.PROFILING_ENABLE)
    per = [[] for _ in plan.steps]
    walls = []
    for rep in range(reps + 1):
        dev.queue.finish()
        q.finish()
        events = []
        t0 = time.perf_counter()
        for fn, args in plan.steps:
            if fn is cl.enqueue_nd_range_kernel:
                events.append(cl.enqueue_nd_range_kernel(q, *args[1:]))
            else:   # an upload (queue, buf, host)
                events.append(cl.enqueue_copy(q, args[1], args[2], is_blocking=False))
        q.finish()
        wall = time.perf_counter() - t0
        if rep == 0:
            continue  # warm-up
        walls.append(wall)
        for i, ev in enumerate(events):
            per[i].append((ev.profile.end - ev.profile.start) * 1e-6)
    return [float(np.median(p)) for p in per], float(np.median(walls)) * 1e3


def _wall(fn, dev, reps):
    ts = []
    for _ in range(reps):
        dev.synchronize()
        t0 = time.perf_counter()
        fn()
        dev.synchronize()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1e3


def clnet_profile(wl, state, seed, dev, reps):
    out = {}
    for kind, optimize in (("eager", False), ("compiled", True)):
        cm = wl.build(clnet).to(dev)
        cm.load_state_dict(state)
        cdata = wl.make_data(np.random.default_rng(seed), clnet, dev)
        _, raw = make_step(clnet, wl, cm, cdata, dev)
        cstep = CompiledFunction(raw, optimize=optimize)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CompileWarning)
            for _ in range(3):
                cstep()
            dev.synchronize()
        s = cstep.stats
        notes = [str(w.message) for w in caught if issubclass(w.category, CompileWarning)]
        entry, plan, desc = _rows(cstep)
        print(f"clnet {kind:8s} plan: {plan.launch_count} launches ({len(plan.steps)} steps), "
              f"{len(plan.refreshers)} refreshers ({sum(1 for c, _, _ in plan.refreshers if c is None)} host "
              f"steps/guards), stats: warmups {s.warmups} traces {s.traces} replays {s.replays} eager {s.eager_calls} "
              f"graph breaks {len(s.graph_breaks)} launches traced {s.launches_traced} replayed "
              f"{s.launches_replayed}; CompileWarnings: {notes or 'none'}")
        dev_ms, loop_ms = _profile_plan(plan, dev, reps)
        wall = _wall(raw if kind == "eager" else cstep, dev, reps)
        out[kind] = dict(desc=desc, ms=dev_ms, loop=loop_ms, wall=wall)
    return out


# --- torch -----------------------------------------------------------------------------------------
def torch_profile(torch, step, reps):
    from torch.profiler import ProfilerActivity, profile
    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        t0 = time.perf_counter()
        for _ in range(reps):
            step()
        wall = (time.perf_counter() - t0) / reps * 1e3
    ops = {}
    for ev in prof.key_averages():
        ops[ev.key] = (ev.self_cpu_time_total / 1e3 / reps, ev.count / reps, (ev.flops or 0) / reps)
    return ops, wall


# --- report ----------------------------------------------------------------------------------------
def report(c, tops, twall, top):
    fam = {k: defaultdict(lambda: [0.0, 0, 0.0]) for k in ("eager", "compiled")}
    for kind in fam:
        for (kname, op, phase, flops), ms in zip(c[kind]["desc"], c[kind]["ms"]):
            f = fam[kind][family(kname, op)]
            f[0] += ms
            f[1] += 1
            f[2] += flops
    tfam = defaultdict(lambda: [0.0, 0, 0.0])
    for name, (ms, n, flops) in tops.items():
        f = tfam[torch_family(name)]
        f[0] += ms
        f[1] += n
        f[2] += flops
    names = sorted(set(fam["eager"]) | set(fam["compiled"]) | set(tfam),
                   key=lambda k: -max(fam["eager"][k][0], fam["compiled"][k][0], tfam[k][0]))
    print("\nper step, by family: clnet device time (sum of kernel events) vs PyTorch self CPU time")
    print(f"{'family':28s} {'eager ms':>9s} {'n':>5s} {'compiled ms':>11s} {'n':>5s} {'torch ms':>9s} {'n':>5s}"
          f" {'clnet GF/s':>10s} {'torch GF/s':>10s}")
    tot = [0.0, 0.0, 0.0]
    for k in names:
        e, cc, t = fam["eager"][k], fam["compiled"][k], tfam[k]
        tot[0] += e[0]
        tot[1] += cc[0]
        tot[2] += t[0]
        gf = f"{cc[2] / cc[0] / 1e6:10.1f}" if cc[2] and cc[0] else " " * 10
        tgf = f"{t[2] / t[0] / 1e6:10.1f}" if t[2] and t[0] else " " * 10
        print(f"{k:28s} {e[0]:9.2f} {e[1]:5d} {cc[0]:11.2f} {cc[1]:5d} {t[0]:9.2f} {t[1]:5.0f} {gf} {tgf}")
    print(f"{'sum':28s} {tot[0]:9.2f} {'':5s} {tot[1]:11.2f} {'':5s} {tot[2]:9.2f}")
    print(f"{'plan enqueue loop + finish':28s} {c['eager']['loop']:9.2f} {'':5s} {c['compiled']['loop']:11.2f}")
    print(f"{'step wall (median)':28s} {c['eager']['wall']:9.2f} {'':5s} {c['compiled']['wall']:11.2f} {'':5s} "
          f"{twall:9.2f}   (torch: under the profiler)")

    for kind in ("eager", "compiled"):
        groups = defaultdict(lambda: [0.0, 0, 0.0])
        for (kname, op, phase, flops), ms in zip(c[kind]["desc"], c[kind]["ms"]):
            g = groups[(kname, op, phase)]
            g[0] += ms
            g[1] += 1
            g[2] += flops
        print(f"\nclnet {kind}: top {top} (kernel, innermost op, phase) by device ms per step")
        for (kname, op, phase), (ms, n, flops) in sorted(groups.items(), key=lambda kv: -kv[1][0])[:top]:
            gf = f"{flops / ms / 1e6:7.1f} GFLOP/s" if flops else ""
            print(f"  {ms:8.2f} ms {n:5d}x  {kname:24s} {op:28s} {phase:9s} {gf}")
    print(f"\ntorch: top {top} ops by self CPU ms per step")
    for name, (ms, n, flops) in sorted(tops.items(), key=lambda kv: -kv[1][0])[:top]:
        gf = f"{flops / ms / 1e6:7.1f} GFLOP/s" if flops and ms else ""
        print(f"  {ms:8.2f} ms {n:6.0f}x  {name:40s} {gf}")


def gemm_shapes(c, kind="compiled", top=12):
    groups = defaultdict(lambda: [0.0, 0])
    for (kname, op, phase, flops), ms, in zip(c[kind]["desc"], c[kind]["ms"]):
        if flops:
            groups[(op, phase, flops)][0] += ms
            groups[(op, phase, flops)][1] += 1
    print(f"\nclnet {kind}: GEMMs by (op, phase, FLOPs per launch)")
    for (op, phase, flops), (ms, n) in sorted(groups.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"  {ms:8.2f} ms {n:4d}x {op:24s} {phase:9s} {flops / 1e6:9.1f} MFLOP each  "
              f"{flops * n / ms / 1e6:7.1f} GFLOP/s")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(WORKLOADS), default="lstm")
    ap.add_argument("--device", default=None)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--torch-only", action="store_true",
                    help="PyTorch's profile alone (no clnet in the process: no OpenCL runtime threads beside it)")
    ap.add_argument("--pack-per-step", action="store_true",
                    help="recurrent layers pack W_hh at every step (the behaviour before clnet.ops.matmul.pack_b)")
    args = ap.parse_args(argv)
    if args.pack_per_step:
        from bench_rnn_prepack import _pack_per_step
        from clnet.ops import rnn as _rnn
        _rnn.pack_b = _pack_per_step
        print("(recurrent layers pack W_hh at every step: --pack-per-step)")
    make, batch = WORKLOADS[args.model]
    wl = make(batch)
    torch = load_torch(not args.no_torch)
    dev = open_device(args.device)
    header(f"{wl.name} training step, batch {wl.batch}: where the time goes", dev, torch)
    import torch as _t  # the reference weights come from PyTorch even with --no-torch
    tm, state, seed = torch_reference(wl, _t)
    if args.torch_only:
        tdata = wl.make_data(np.random.default_rng(seed), torch, None)
        tstep = make_step(torch, wl, tm, tdata)
        plain = []
        for _ in range(args.reps + 1):
            t0 = time.perf_counter()
            tstep()
            plain.append(time.perf_counter() - t0)
        tops, twall = torch_profile(torch, tstep, args.reps)
        print(f"torch step wall: {np.median(plain[1:]) * 1e3:.1f} ms unprofiled, {twall:.1f} ms under the profiler")
        for fam in sorted({torch_family(k) for k in tops}, key=lambda f: -sum(v[0] for k, v in tops.items()
                                                                              if torch_family(k) == f)):
            rows = [v for k, v in tops.items() if torch_family(k) == fam]
            ms, fl = sum(r[0] for r in rows), sum(r[2] for r in rows)
            print(f"  {fam:28s} {ms:8.2f} ms" + (f"  {fl / ms / 1e6:7.1f} GFLOP/s" if fl and ms else ""))
        for name, (ms, n, flops) in sorted(tops.items(), key=lambda kv: -kv[1][0])[:args.top]:
            gf = f"{flops / ms / 1e6:7.1f} GFLOP/s" if flops and ms else ""
            print(f"  {ms:8.2f} ms {n:6.0f}x  {name:40s} {gf}")
        return
    c = clnet_profile(wl, state, seed, dev, args.reps)
    tops, twall = {}, float("nan")
    if torch is not None:
        tdata = wl.make_data(np.random.default_rng(seed), torch, None)
        tops, twall = torch_profile(torch, make_step(torch, wl, tm, tdata), args.reps)
    report(c, tops, twall, args.top)
    gemm_shapes(c, "eager")
    gemm_shapes(c, "compiled")


if __name__ == "__main__":
    main()
