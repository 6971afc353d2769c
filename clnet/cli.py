"""The `clnet` command: `clnet devices`, `clnet selftest`, `clnet cache info|clear`, `clnet bench`, `clnet tune`,
`clnet launch` (clnet/distributed/launch.py).

Subcommands live in the COMMANDS table at the bottom: one row (name, help, add_arguments, run) per
command, so `bench` or `tune` are added by writing two functions and one row.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .backend import build_verdicts
from .backend.memory import format_bytes
from .distributed import launch

HOW_TO_GET_A_DEVICE = (
    "No OpenCL device found. To get one:\n"
    "  pip install 'clnet[pocl]'        a CPU device that needs no driver (PoCL)\n"
    "  apt-get install pocl-opencl-icd  the same from Debian/Ubuntu (faster where available)\n"
    "  or your GPU vendor's OpenCL driver (NVIDIA driver, AMD ROCm, Intel compute-runtime).")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


# --- clnet devices --------------------------------------------------------------------------------
def _discover():
    """(devices, skipped platforms, default or None), with the skipped-platform warning silenced:
    `clnet devices` lists those platforms itself."""
    from .backend import devices as D
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", D.PlatformSkippedWarning)
        devs = D.all_devices()
        skipped = D.skipped_platforms()
    return devs, skipped, D.would_be_default()


def _profile_text(prof) -> str:
    mm = (f"matmul {prof.matmul_variant} tile {prof.matmul_tile_m}x{prof.matmul_tile_n}x{prof.matmul_tile_k} "
          f"per item {prof.matmul_wpt_m}x{prof.matmul_wpt_n}")
    for name, cp in prof.matmul_classes:
        mm += (f"; {name} products: {cp.matmul_variant} tile {cp.matmul_tile_m}x{cp.matmul_tile_n}x{cp.matmul_tile_k} "
               f"per item {cp.matmul_wpt_m}x{cp.matmul_wpt_n}")
    return (f"work-groups: elementwise {prof.elementwise_wg}, reduce {prof.reduce_wg} (max {prof.max_wg}); "
            f"vector width {prof.vector_width}; {mm}")


def _device_rows(dev, default) -> list[tuple[str, str]]:
    kind = dev.type + (" (simulator: never the default)" if dev.is_simulator else
                       " (discrete)" if dev.is_discrete_gpu else "")
    rows = [
        ("device", f"{dev.spec}" + ("  <- default" if dev is default else "")),
        ("name", dev.name),
        ("type", kind),
        ("vendor", f"{dev.vendor} (implementation {dev.implementation})"),
        ("compute units", str(dev.compute_units)),
        ("global memory", format_bytes(dev.global_mem)),
        ("max allocation", format_bytes(dev.max_alloc)),
        ("local memory", format_bytes(dev.local_mem) + ("" if dev.local_mem_is_local else " (emulated in global)")),
        ("max work-group", f"{dev.max_work_group_size} (items {'x'.join(map(str, dev.max_work_item_sizes))})"),
        ("fp16 / fp64", f"{_yes(dev.fp16)} / {_yes(dev.fp64)}"),
        ("OpenCL C", dev.opencl_c_version),
        ("driver", dev.driver_version),
        ("profile", _profile_text(dev.profile)),
    ]
    rows += [("quirk", q) for q in dev.profile.quirks]
    vetted = build_verdicts.counts(dev)
    if vetted["ok"] or vetted["crash"]:
        rows.append(("compiler", f"{vetted['ok']} kernel variants built in the build child"
                     + (f", {vetted['crash']} crashed it (fallback in the profile)" if vetted["crash"] else "")))
    return rows


def _platforms(devs, skipped) -> list[dict]:
    """Platforms in index order, each with its devices or the reason it was skipped."""
    plats: dict[int, dict] = {}
    for d in devs:
        plats.setdefault(d.platform_index, {"index": d.platform_index, "name": d.platform_name,
                                            "version": d.platform_version, "devices": [], "skipped": None})
        plats[d.platform_index]["devices"].append(d)
    for s in skipped:
        entry = plats.setdefault(s.index, {"index": s.index, "name": s.name, "version": s.version,
                                           "devices": [], "skipped": None})
        entry["skipped"] = s.reason if entry["skipped"] is None else f"{entry['skipped']}; {s.reason}"
    return [plats[i] for i in sorted(plats)]


def cmd_devices(args) -> int:
    from .backend import calibration, devices as D
    if args.calibrate:
        devs, _, _ = _discover()
        contenders = D.calibration_candidates([d for d in devs if not d.is_simulator])
        if not contenders:
            print("clnet devices --calibrate: fewer than two CPU implementations (or a GPU is present): "
                  "nothing to choose between by speed")
        else:
            calibration.measure(contenders)
            D.set_default_device(None)
    devs, skipped, default = _discover()
    plats = _platforms(devs, skipped)
    if args.json:
        out = {
            "default": default.spec if default else None,
            "default_reason": D.default_reason(default, devs) if default else None,
            "platforms": [{
                "index": p["index"], "name": p["name"], "version": p["version"], "skipped": p["skipped"],
                "devices": [dict(d.facts(), default=d is default, profile=d.profile.as_dict())
                            for d in p["devices"]],
            } for p in plats],
        }
        if not devs:
            out["message"] = HOW_TO_GET_A_DEVICE
        print(json.dumps(out, indent=2))
        return 0
    if not plats:
        print("No OpenCL platform is installed.")
    for p in plats:
        print(f"Platform {p['index']}: {p['name']}  ({p['version']})")
        if p["skipped"]:
            print(f"  skipped: {p['skipped']}")
        for d in p["devices"]:
            rows = _device_rows(d, default)
            width = max(len(k) for k, _ in rows)
            for key, value in rows:
                print(f"  {key:<{width}}  {value}")
            print()
        if not p["devices"]:
            print()
    if not devs:
        print(HOW_TO_GET_A_DEVICE)
    elif default is None:
        print("No default device: only a simulator is present. Select it with CLNET_DEVICE=oclgrind.")
    else:
        print(f"Default: {default.describe()}: {D.default_reason(default, devs)}.\nChoose another with CLNET_DEVICE=... "
              "or device=\"...\" ('gpu', 'cpu', 'gpu:1', 'opencl:P:D', or a word such as pocl, intel, rusticl, "
              "oclgrind, nvidia).")
    return 0


# --- clnet selftest -------------------------------------------------------------------------------
class _Missing(Exception):
    """The kernel family is not part of this clnet build."""


def _find(*paths: str):
    """The first attribute that exists among 'module:attr' paths, else _Missing."""
    for path in paths:
        module, attr = path.split(":")
        try:
            obj = importlib.import_module(module)
        except ImportError:
            continue
        for part in attr.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    raise _Missing("not in this clnet")


def _close(actual, expected, what: str, rtol=1e-4, atol=1e-5) -> None:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape}, expected {expected.shape}")
    if not np.allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True):
        err = np.max(np.abs(actual - expected))
        raise AssertionError(f"{what}: max abs error {err:.3g} (rtol {rtol}, atol {atol})")


def _check_elementwise(dev, rng):
    import clnet
    a, b = rng.standard_normal((37, 19)).astype("float32"), rng.standard_normal((19,)).astype("float32")
    ta, tb = clnet.tensor(a, device=dev), clnet.tensor(b, device=dev)
    _close((ta * tb + 1.5).numpy(), a * b + 1.5, "a * b + 1.5 (broadcast)")
    _close(clnet.exp(ta).numpy(), np.exp(a), "exp")
    _close(clnet.where(ta > 0, ta, tb).numpy(), np.where(a > 0, a, b), "where")
    return "broadcast a*b+c, exp, where"


def _check_reduce(dev, rng):
    import clnet
    x = rng.standard_normal((23, 41)).astype("float32")
    t = clnet.tensor(x, device=dev)
    _close(t.sum(dim=1).numpy(), x.astype("float64").sum(1), "sum(dim=1)")
    _close(t.amax(dim=0).numpy(), x.max(0), "amax(dim=0)")
    _close(t.argmax(dim=1).numpy(), x.argmax(1), "argmax(dim=1)", rtol=0, atol=0)
    _close(t.mean().numpy(), x.astype("float64").mean(), "mean()")
    return "sum, amax, argmax, mean"


def _check_matmul(dev, rng):
    import clnet
    a = rng.standard_normal((33, 47)).astype("float32")
    b = rng.standard_normal((47, 29)).astype("float32")
    ta, tb = clnet.tensor(a, device=dev), clnet.tensor(b, device=dev)
    _close((ta @ tb).numpy(), a.astype("float64") @ b, "[33x47] @ [47x29]")
    _close((ta.T @ ta).numpy(), a.T.astype("float64") @ a, "a.T @ a (strided)", rtol=1e-4, atol=1e-4)
    return "[33x47]@[47x29], a.T@a"


def _check_softmax(dev, rng):
    import clnet
    softmax = _find("clnet.nn.functional:softmax", "clnet.ops.nn:softmax")
    x = rng.standard_normal((13, 21)).astype("float32") * 4
    e = np.exp(x - x.max(1, keepdims=True))
    _close(softmax(clnet.tensor(x, device=dev), dim=1).numpy(), e / e.sum(1, keepdims=True), "softmax(dim=1)")
    return "softmax over rows"


def _check_conv(dev, rng):
    import clnet
    conv2d = _find("clnet.nn.functional:conv2d", "clnet.ops.conv:conv2d")
    x = rng.standard_normal((2, 3, 7, 6)).astype("float32")
    w = rng.standard_normal((4, 3, 3, 3)).astype("float32")
    b = rng.standard_normal((4,)).astype("float32")
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))).astype("float64")
    ref = np.zeros((2, 4, 7, 6))
    for i in range(3):
        for j in range(3):
            ref += np.einsum("nchw,oc->nohw", xp[:, :, i:i + 7, j:j + 6], w[:, :, i, j])
    ref += b[None, :, None, None]
    out = conv2d(clnet.tensor(x, device=dev), clnet.tensor(w, device=dev), clnet.tensor(b, device=dev), padding=1)
    _close(out.numpy(), ref, "conv2d 3x3 padding 1", atol=1e-4)
    return "conv2d 3x3, padding 1, bias"


def _check_optim(dev, rng):
    import clnet
    sgd = _find("clnet.optim:SGD")
    p0 = rng.standard_normal((5, 7)).astype("float32")
    p = clnet.tensor(p0, device=dev, requires_grad=True)
    opt = sgd([p], lr=0.1, momentum=0.9)
    ref, buf = p0.astype("float64"), None
    for _ in range(2):
        opt.zero_grad()
        (p * p).sum().backward()
        opt.step()
        g = 2 * ref
        buf = g if buf is None else 0.9 * buf + g
        ref = ref - 0.1 * buf
    _close(p.detach().numpy(), ref, "SGD(momentum=0.9), 2 steps")
    return "SGD with momentum, 2 steps"


def _check_random(dev, rng):
    import clnet
    clnet.manual_seed(1234)
    u = clnet.rand(4096, device=dev).numpy()
    n = clnet.randn(4096, device=dev).numpy()
    clnet.manual_seed(1234)
    u2 = clnet.rand(4096, device=dev).numpy()
    if not ((u >= 0).all() and (u < 1).all()):
        raise AssertionError("rand: values outside [0, 1)")
    if abs(u.mean() - 0.5) > 0.03 or abs(u.std() - 12 ** -0.5) > 0.03:
        raise AssertionError(f"rand: mean {u.mean():.3f} / std {u.std():.3f}, expected 0.5 / 0.289")
    if abs(n.mean()) > 0.08 or abs(n.std() - 1) > 0.08:
        raise AssertionError(f"randn: mean {n.mean():.3f} / std {n.std():.3f}, expected 0 / 1")
    if not np.array_equal(u, u2):
        raise AssertionError("rand: the same seed gave different numbers")
    return "rand/randn moments, reproducible seed"


SELFTESTS: list[tuple[str, Callable]] = [
    ("elementwise", _check_elementwise), ("reduce", _check_reduce), ("matmul", _check_matmul),
    ("softmax", _check_softmax), ("conv", _check_conv), ("optim", _check_optim), ("random", _check_random),
]


def cmd_selftest(args) -> int:
    import clnet
    from .errors import DeviceNotFoundError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            dev = clnet.device(args.device) if args.device else clnet.default_device()
    except DeviceNotFoundError as err:
        print(f"selftest: {err}", file=sys.stderr)
        return 1
    from .backend import devices as D
    previous, D._DEFAULT = D._DEFAULT, dev  # ops that make helper tensors put them on `dev` too
    try:
        failed = _run_selftests(dev, args.verbose)
    finally:
        D._DEFAULT = previous
    print("selftest " + (f"FAILED: {failed} famil{'y' if failed == 1 else 'ies'}" if failed else "passed"))
    return 1 if failed else 0


def _run_selftests(dev, verbose: bool) -> int:
    print(f"clnet selftest on {dev.describe()}")
    failed = 0
    for name, check in SELFTESTS:
        rng = np.random.default_rng(0)
        try:
            detail = check(dev, rng)
            print(f"  PASS  {name:12s} {detail}")
        except _Missing as err:
            print(f"  SKIP  {name:12s} {err}")
        except Exception as err:  # a miscompile, a build error, a wrong answer: report and go on
            failed += 1
            text = str(err).strip()
            print(f"  FAIL  {name:12s} {type(err).__name__}: {text.splitlines()[0] if text else ''}")
            if verbose:
                print("\n".join("        " + line for line in text.splitlines()[1:]))
    return failed


# --- clnet cache ----------------------------------------------------------------------------------
def _dir_size(path) -> tuple[int, int]:
    """(files, bytes) under path; files that vanish meanwhile (another process's temp files) are skipped."""
    count = size = 0
    for p in (path.rglob("*") if path.exists() else ()):
        try:
            if p.is_file():
                size += p.stat().st_size
                count += 1
        except OSError:
            continue
    return count, size


def cmd_cache(args) -> int:
    from .backend import programs
    from .backend import build_verdicts
    if args.action == "clear":
        n, size = _dir_size(programs.cache_dir() / "binaries")
        path = programs.clear_cache()
        print(f"removed {n} cached binaries ({format_bytes(size)}) from {path}")
        if args.verdicts:
            print(f"removed {build_verdicts.clear()} compiler verdicts from {build_verdicts.folder()}: kernels are "
                  "vetted in the build child again, fallbacks after compiler crashes are undone")
        else:
            print(f"  compiler verdicts kept ({build_verdicts.folder()}; `clnet cache clear --verdicts` removes them)")
        _say_tuning_file(kept=True)
        return 0
    root = programs.cache_dir()
    n, size = _dir_size(root / "binaries")
    print(f"clnet cache: {root}  (set CLNET_CACHE_DIR to move it; `clnet cache clear` empties it)")
    print(f"  binaries: {n} files, {format_bytes(size)}")
    nv = sum(1 for p in build_verdicts.folder().rglob("*.json") if p.name != "device.json")
    print(f"  compiler verdicts: {nv} template family variants vetted in the build child "
          f"({build_verdicts.folder()})")
    _say_tuning_file(kept=False)
    print("driver caches (managed by the drivers themselves):")
    for name, path in programs.driver_caches().items():
        n, size = _dir_size(path)
        print(f"  {name:7s} {path}: " + (f"{n} files, {format_bytes(size)}" if path.exists() else "absent"))
    return 0


def _say_tuning_file(kept: bool) -> None:
    """The tuning file is measurements, not rebuildable binaries: `cache clear` keeps it and says so."""
    from .backend import tuning_file
    path = tuning_file.path()
    if path.exists():
        print(f"  tuned parameters: {path}" + (" kept" if kept else "")
              + " (`clnet tune --show` lists them, `clnet tune --forget` deletes them)")
    elif not kept:
        print(f"  tuned parameters: none ({path} is written by `clnet tune`)")


# --- clnet bench ----------------------------------------------------------------------------------
def cmd_bench(args) -> int:
    from . import bench
    dev = _bench_device(args.device)
    if dev is None:
        return 1
    try:
        bench.run(dev, quick=args.quick, numpy_beside=None if not args.no_numpy else False, reps=args.reps)
    except bench.WrongResult as err:
        print(f"bench: wrong result, timings withheld: {err}", file=sys.stderr)
        return 1
    return 0


def _bench_device(spec):
    import clnet
    from .errors import DeviceNotFoundError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return clnet.device(spec) if spec else clnet.default_device()
    except DeviceNotFoundError as err:
        print(f"bench: {err}", file=sys.stderr)
        return None


# --- clnet tune -----------------------------------------------------------------------------------
def cmd_tune(args) -> int:
    from . import tune
    from .backend import tuning_file
    if args.show:
        tune.show()
        return 0
    if args.forget:
        dev = _bench_device(args.device) if args.device else None
        if args.device and dev is None:
            return 1
        removed = tuning_file.forget(dev)
        print(("removed" if removed else "nothing to remove:") + " tuned parameters"
              + (f" of {dev.describe()}" if dev else "") + f" ({tuning_file.path()})")
        return 0
    dev = _bench_device(args.device)
    if dev is None:
        return 1
    try:
        shapes = [tune.Shape.parse(s) for s in args.shapes.split(",")] if args.shapes else None
        conv = [tune.ConvShape.parse(s) for s in args.conv.split(";") if s.strip()] if args.conv else None
    except ValueError as err:
        print(f"tune: {err}", file=sys.stderr)
        return 2
    try:
        # matmul unless only conv shapes were asked for; the conv classes unless only products were
        if not conv:
            tune.tune(dev, shapes=shapes, quick=args.quick, budget=args.budget, reps=args.reps,
                      store=not args.dry_run)
        if conv or not (shapes or args.no_conv):
            tune.tune_conv(dev, shapes=conv, quick=args.quick, budget=args.budget, reps=args.reps,
                           store=not args.dry_run)
    except RuntimeError as err:
        print(f"tune: {err}", file=sys.stderr)
        return 1
    return 0


# --- the command table ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _devices_args(p):
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--calibrate", action="store_true",
                   help="time clnet on each CPU implementation again (the default is the fastest; kept per machine)")


def _selftest_args(p):
    p.add_argument("--device", "-d", default=None,
                   help="device to test: gpu, cpu, gpu:1, opencl:P:D, pocl, rusticl, oclgrind, ... "
                        "(default: CLNET_DEVICE or the best device)")
    p.add_argument("--verbose", "-v", action="store_true", help="print whole error messages")


def _cache_args(p):
    p.add_argument("action", choices=("info", "clear"), nargs="?", default="info",
                   help="info: where the caches are and their size (default); clear: delete clnet's binaries")
    p.add_argument("--verdicts", action="store_true",
                   help="with clear: also forget which kernel variants built (or crashed the compiler) here")


def _bench_args(p):
    p.add_argument("--device", "-d", default=None, help="device to measure (default: CLNET_DEVICE or the best device)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs, in seconds")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions per figure (median is shown)")
    p.add_argument("--no-numpy", action="store_true", help="skip numpy's figures (shown by default on CPUs)")


def _tune_args(p):
    p.add_argument("--device", "-d", default=None, help="device to tune (default: CLNET_DEVICE or the best device)")
    p.add_argument("--quick", action="store_true", help="tiny shapes and few candidates: checks that it runs")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds to spend searching (default: 180 on fast devices, 600 on simulators and "
                        "llvmpipe, 30 with --quick); the default parameters are always measured")
    p.add_argument("--shapes", default=None, help="products to time, comma-separated N or MxNxK "
                   "(default: 256..2048 square, 64x100x1000 thin, 4096x64x256 tall)")
    p.add_argument("--conv", default=None, metavar="N,C,H,W,K[,kh,kw,stride,pad]",
                   help="tune conv2d for these shapes only (';'-separated): algorithm and register block per "
                        "pass, stored for each shape's class (default: after the matmul, a set of "
                        "representative conv shapes)")
    p.add_argument("--no-conv", action="store_true", help="tune the matmul only")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions per shape (median is used)")
    p.add_argument("--dry-run", action="store_true", help="search and print, but store nothing")
    p.add_argument("--show", action="store_true", help="print the stored tuned parameters and exit")
    p.add_argument("--forget", action="store_true",
                   help="delete the stored parameters (of --device only, when given) and exit")


COMMANDS: list[Command] = [
    Command("devices", "list every OpenCL platform and device with its facts, marking the default",
            _devices_args, cmd_devices),
    Command("selftest", "run a small kernel of each family on a device and compare with numpy",
            _selftest_args, cmd_selftest),
    Command("cache", "show or clear the kernel binary cache", _cache_args, cmd_cache),
    Command("bench", "GEMM GFLOP/s, elementwise GB/s and an MLP training step on a device, numpy beside on CPUs",
            _bench_args, cmd_bench),
    Command("tune", "search matmul and conv2d kernel parameters for a device, verified against numpy; store "
            "the winners",
            _tune_args, cmd_tune),
    Command("launch", "start K ranks of a training script with mpiexec, one device per local rank (clnet[mpi])",
            launch.add_arguments, launch.run),
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(prog="clnet", description="clnet: deep learning on any OpenCL device.")
    parser.add_argument("--version", action="version", version=f"clnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(run=cmd.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
