"""Runs the public PyTorch programs of this folder on clnet, each with only its import changed, and checks
each one's result against a bound taken from running the same program on PyTorch.

    CLNET_TEST_DEVICES=pocl pytest -q tests/programs/torch/run_torch_programs.py     # what CI runs
    python tests/programs/torch/run_torch_programs.py --reference [NAME ...]         # REFERENCE.md's table

The programs say `import clnet as torch` (and `import clnet.nn as nn`, ...). For PyTorch the runner
rewrites those import lines, and only those, to name torch: that is the whole difference between the two
runs. When torch is installed each test runs the program on PyTorch first (it must stay inside its bound
there too, so a bound cannot drift from what PyTorch does), then on clnet; CLNET_PROGRAMS_TORCH=0 skips the
PyTorch runs (CI: REFERENCE.md holds their figures). Programs run in this process
(kernels built by one program serve the next), from a temporary working directory, with their output
captured; the result is read from the program's variables or printed lines (CHECKS below).

A program that needs a piece of clnet still being built (DataLoader, LSTM, ...) is an expected failure
naming the missing piece while that piece is absent, and runs as soon as it lands.

This file is not collected by a plain `pytest` run (its name does not start with test_), so the programs
run once in CI, in their own stage (.ci/run), instead of again inside the full suite.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import math
import os
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
IMPORT_LINE = re.compile(r"^(\s*)(import|from)\s+clnet\b")


@dataclass
class Check:
    """How to read a program's result and the bound it must meet, with the PyTorch figures it came from."""

    what: str                 # what the figure is, for messages and REFERENCE.md
    read: object              # (globals, stdout) -> float
    low: float = -math.inf    # the figure must lie in [low, high]
    high: float = math.inf
    needs: tuple = ()         # clnet attributes the program needs ("utils.data.DataLoader"), with their owner
    why: str = ""             # how the bound was chosen from the PyTorch figures
    seeds: int = 5            # PyTorch runs behind the reference figures
    extra_argv: list = field(default_factory=list)


def var(name):
    return lambda g, out: float(g[name])


def printed(pattern, group=1, last=True):
    """The number in the last (or first) printed line matching `pattern`."""
    def read(g, out):
        hits = re.findall(pattern, out, flags=re.M)
        if not hits:
            raise AssertionError(f"the program printed no line matching {pattern!r}")
        hit = hits[-1] if last else hits[0]
        return float(hit[group - 1] if isinstance(hit, tuple) else hit)
    return read


# Bounds: PyTorch figures over 5 runs (seeds 0-4) are in REFERENCE.md; a bound sits outside PyTorch's
# range by a margin (the numbers clnet draws differ from PyTorch's for the same seed, so a clnet run is
# one more draw from the same distribution, not a copy of a PyTorch run).
DATALOADER = ("utils.data.DataLoader", "data")
WEIGHTS_ONLY = ("load(weights_only=)", "torch-nn")
CHECKS = {
    "polynomial_tensor": Check("final loss (sum of squares over 2000 points)", var("loss"), high=2500,
                               why="random starts reach 94-529 on PyTorch; a fit that does not learn stays near 1e5"),
    "polynomial_autograd": Check("final loss", lambda g, o: g["loss"].item(), high=2500, why="as polynomial_tensor"),
    "polynomial_custom_function": Check("final loss", lambda g, o: g["loss"].item(), high=60,
                                        why="fixed start: 37.4 on every PyTorch run"),
    "polynomial_nn": Check("final loss", lambda g, o: g["loss"].item(), high=2500, why="as polynomial_tensor"),
    "polynomial_optim": Check("final loss", lambda g, o: g["loss"].item(), high=2500,
                              why="RMSprop from random starts: 27-1015 on PyTorch"),
    "polynomial_module": Check("final loss", lambda g, o: g["loss"].item(), high=2500, why="as polynomial_tensor"),
    "dynamic_net": Check("final loss", lambda g, o: g["loss"].item(), high=10000,
                         why="random degree per step: 631-3477 on PyTorch; the untrained net is near 1e6"),
    "blitz_neural_networks": Check("MSE after 30 SGD steps", lambda g, o: g["loss"].item(), high=1.0,
                                   why="0.04-0.45 on PyTorch; the untrained net's MSE is about 1-2",
                                   needs=(("core.tape.Node.next_functions", "torch-api"),)),
    "blitz_autograd": Check("classifier loss after 20 steps (frozen features)", lambda g, o: g["loss"].item(),
                            high=1.5, why="0.54-0.87 on PyTorch; untrained: ln 10 = 2.3"),
    "autograd_quickstart": Check("checksum of the printed gradients", var("total"), low=140, high=152,
                                 why="145-147.4 on PyTorch (142 of it is exact, the rest depends on randn)"),
    "tensor_quickstart": Check("checksum of the products", var("checksum"), low=227.999, high=228.001,
                               why="exact: every product is of ones", needs=(("matmul(out=)", "torch-api"),
                                                                              ("mul(out=)", "torch-api"))),
    "quickstart": Check("test accuracy", var("accuracy"), low=0.3, why="0.43-0.49 on PyTorch; chance is 0.1",
                        needs=(DATALOADER, WEIGHTS_ONLY)),
    "nn_tutorial": Check("validation loss of the DataLoader-fed logistic regression", var("logistic_loss"), high=1.5,
                         why="1.16-1.19 on PyTorch; untrained: ln 10 = 2.3",
                         needs=(DATALOADER, ("utils.data.TensorDataset", "data"), ("nn.AdaptiveAvgPool2d", "torch-nn"))),
    "blitz_cifar10": Check("test accuracy (%)", printed(r"Accuracy of the network on the \d+ test images: (\d+) %"),
                           low=40, why="75-100 on PyTorch; chance is 10", needs=(DATALOADER, WEIGHTS_ONLY)),
    "mnist": Check("test accuracy", lambda g, o: g["test_accuracy"], low=0.25, why="0.33-0.59 on PyTorch; chance is 0.1",
                   needs=(DATALOADER, ("optim.Adadelta", "torch-nn"), ("Tensor.view_as", "torch-api"))),
    "regression": Check("smooth L1 loss at the stop", printed(r"Loss: ([0-9.]+) after"), high=0.005,
                        why="converges below 1e-3 on PyTorch (0.00045-0.00092)",
                        needs=(("nn.functional.smooth_l1_loss", "torch-nn"),)),
    "vae": Check("test loss per image", var("test_loss"), high=460,
                 why="353-358 on PyTorch here, 404 on the CI machine's CPU; an untrained decoder gives about 543", needs=(DATALOADER,)),
    "time_sequence_prediction": Check("test loss", var("test_loss"), high=0.2,
                                      why="0.0008-0.0016 on PyTorch (clnet: 0.001-0.033); untrained: about 0.5",
                                      needs=(("nn.LSTMCell", "torch-nn"), ("optim.LBFGS", "torch-nn"))),
    "word_language_model": Check("test loss (nats per word)", var("test_loss"), high=2.5,
                                 why="1.40-1.57 on PyTorch; uniform over the vocabulary is 3.7",
                                 needs=(("nn.Embedding", "torch-nn"), ("nn.LSTM", "torch-nn"),
                                        ("nn.utils.clip_grad_norm_", "torch-nn"),
                                        ("Tensor.add_(alpha=)", "torch-api"))),
    "ngram_language_model": Check("decrease of the summed loss over the 10 epochs",
                                  lambda g, o: g["losses"][0] - g["losses"][-1], low=15,
                                  why="37-40 on PyTorch (from about 530); lr 0.001 moves slowly",
                                  needs=(("nn.Embedding", "torch-nn"),)),
    "bow_classifier": Check("test sentences classified right (of 2)", var("correct"), low=2,
                            why="both on every PyTorch run", needs=(("LongTensor", "torch-api"),)),
    "lstm_tagger": Check("final loss", lambda g, o: g["loss"].item(), high=0.3,
                         why="0.025-0.054 on PyTorch; untrained: ln 3 = 1.1",
                         needs=(("nn.Embedding", "torch-nn"), ("nn.LSTM", "torch-nn"))),
    "micrograd_vs_torch": Check("largest difference to the scalar engine", var("difference"), high=1e-6,
                                why="the program asserts agreement itself (1e-6, as micrograd's test)",
                                needs=(("Tensor", "torch-api: torch.Tensor(list)"),)),
    "dcgan": Check("D(x) - D(G(z)) over the last 10 steps", var("gap"), low=0.01,
                   why="0.017-0.14 on PyTorch (seeds 0-7 on the AMD EPYC); a discriminator that learns nothing gives 0",
                   needs=(DATALOADER, ("nn.ConvTranspose2d", "torch-nn"))),
    "bilstm_crf": Check("NLL of the last epoch / NLL of the first", var("loss_ratio"), high=0.5,
                        why="0.08-0.24 on PyTorch; a model that does not learn stays near 1",
                        needs=(("nn.LSTM", "torch-nn"),)),
    "buildmodel_quickstart": Check("largest deviation of a softmax row sum from 1", var("worst"), high=1e-5,
                                   why="float32 rounding: 6e-8 to 1.2e-7 on PyTorch"),
    "nanogpt": Check("validation loss (nats per character)", var("val_loss"), high=2.3,
                     why="1.58-1.75 on PyTorch; characters uniformly: 3.4",
                     needs=(("nn.Embedding", "torch-nn"), ("nn.GELU", "torch-nn"), ("nn.functional.layer_norm", "torch-nn"),
                            ("nn.utils.clip_grad_norm_", "torch-nn"), ("topk", "torch-api"),
                            ("multinomial", "torch-api"))),
}


# --- running a program ---------------------------------------------------------------------------------
def source_for(name: str, framework: str) -> str:
    """The program's text for `framework`: as written for clnet, or with its clnet import lines naming torch."""
    text = (HERE / f"{name}.py").read_text()
    if framework == "clnet":
        return text
    lines = []
    for line in text.splitlines(keepends=True):
        if IMPORT_LINE.match(line):
            line = re.sub(r"\bclnet\b", "torch", line).replace("import torch as torch", "import torch")
        lines.append(line)
    return "".join(lines)


def check_only_imports_differ(name: str) -> None:
    """The PyTorch text differs from the clnet text in import lines only, and the clnet text never imports
    torch itself (a program that did would measure PyTorch twice)."""
    ours, theirs = source_for(name, "clnet").splitlines(), source_for(name, "torch").splitlines()
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        if a != b:
            assert IMPORT_LINE.match(a), f"{name}: a line other than an import differs: {a!r}"
    for line in ours:
        assert not re.match(r"^\s*(import|from)\s+torch\b", line), f"{name}: imports torch itself: {line!r}"


def missing_pieces(check: Check) -> list:
    """The `needs` entries clnet does not have yet: attribute paths below the clnet package, optionally
    with a keyword argument the function must take ("load(weights_only=)")."""
    import clnet
    missing = []
    for path, owner in check.needs:
        if not _has(clnet, path):
            missing.append(f"clnet.{path} ({owner})")
    return missing


def _has(root, path: str) -> bool:
    m = re.fullmatch(r"([\w.]+)(?:\((\w+)=\))?", path)
    obj = root
    for part in m.group(1).split("."):
        try:
            obj = getattr(obj, part) if hasattr(obj, part) else importlib.import_module(f"{obj.__name__}.{part}")
        except Exception:
            return False
    if m.group(2):
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            return False
        return m.group(2) in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    return True


def run_program(name: str, framework: str, seed: int | None = None) -> tuple[dict, str, float]:
    """Execute the program as __main__ in a scratch directory; returns (globals, stdout, seconds)."""
    code = compile(source_for(name, framework), str(HERE / f"{name}.py"), "exec")
    env = {"__name__": "__main__", "__file__": str(HERE / f"{name}.py")}
    out = io.StringIO()
    old_argv, old_cwd, old_path = sys.argv, os.getcwd(), list(sys.path)
    default = _default_device_state()
    fw = _framework(framework)
    real_seed = fw.manual_seed
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        real_seed(seed)
        # a program that seeds itself gets its seed shifted by the run's, so runs differ as runs of
        # unseeded programs do (the program's text is unchanged)
        fw.manual_seed = lambda s, _shift=seed: real_seed(s + _shift)
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(out):
            os.chdir(scratch)
            sys.argv = [str(HERE / f"{name}.py")] + CHECKS[name].extra_argv
            sys.path.insert(0, str(HERE))
            exec(code, env)
    finally:
        fw.manual_seed = real_seed
        sys.argv, sys.path[:] = old_argv, old_path
        os.chdir(old_cwd)
        _restore_default_device(framework, default)
    return env, out.getvalue(), time.perf_counter() - start


def _framework(framework: str):
    return importlib.import_module(framework)


def _default_device_state():
    from clnet.backend import devices
    return devices._DEFAULT


def _restore_default_device(framework, state):
    """Programs may call set_default_device / set_default_dtype: undo it for the next program."""
    from clnet.backend import devices
    import clnet
    devices._DEFAULT = state
    clnet.set_default_dtype(clnet.float32)
    if framework == "torch":
        import torch
        torch.set_default_device(None)
        torch.set_default_dtype(torch.float32)


def measure(name: str, framework: str, seed: int | None = None) -> tuple[float, str, float]:
    g, out, seconds = run_program(name, framework, seed)
    return float(CHECKS[name].read(g, out)), out, seconds


def assert_within(name: str, value: float, framework: str, out: str) -> None:
    check = CHECKS[name]
    tail = "\n".join(out.splitlines()[-15:])
    assert check.low <= value <= check.high, (
        f"{name} on {framework}: {check.what} = {value:.6g}, outside the bound [{check.low}, {check.high}] "
        f"(REFERENCE.md has PyTorch's figures); the program's last lines:\n{tail}")


# --- pytest -----------------------------------------------------------------------------------------------
def _torch_available() -> bool:
    """PyTorch runs each program first when it is installed, unless CLNET_PROGRAMS_TORCH=0 (CI sets it: the
    PyTorch figures are recorded in REFERENCE.md, and running them again doubled the stage's time)."""
    if os.environ.get("CLNET_PROGRAMS_TORCH", "1") == "0":
        return False
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.fixture
def program_device(device):
    from conftest import is_slow_device
    if is_slow_device(device):
        pytest.skip(f"whole programs on {device.implementation} would take minutes each; they run on PoCL")
    return device


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_program(name, program_device):
    check_only_imports_differ(name)
    if _torch_available():
        value, out, _ = measure(name, "torch", seed=0)
        assert_within(name, value, "PyTorch", out)
    missing = missing_pieces(CHECKS[name])
    if missing:
        pytest.xfail("needs " + ", ".join(missing))
    value, out, seconds = measure(name, "clnet", seed=0)
    print(f"{name}: {CHECKS[name].what} = {value:.6g} on clnet ({seconds:.1f} s)")
    assert_within(name, value, "clnet", out)


# --- the reference table --------------------------------------------------------------------------------
def reference(names: list[str], seeds: int, clnet_too: bool) -> str:
    """Markdown rows: each program's figure on PyTorch over `seeds` runs (and on clnet), and its bound."""
    import torch
    rows = ["| program | figure | PyTorch min / median / max (seeds 0-%d) | clnet (seed 0) | bound |" % (seeds - 1),
            "|---|---|---|---|---|"]
    for name in names:
        check = CHECKS[name]
        torch.set_num_threads(1)
        values = [measure(name, "torch", seed)[0] for seed in range(seeds)]
        ours = "missing " + ", ".join(missing_pieces(check)) if missing_pieces(check) else ""
        if clnet_too and not ours:
            try:
                ours = f"{measure(name, 'clnet', 0)[0]:.4g}"
            except Exception as err:  # the table still gets written; the test reports the failure
                ours = f"error: {type(err).__name__}"
        bound = " and ".join(s for s in (f">= {check.low:g}" if check.low > -math.inf else "",
                                         f"<= {check.high:g}" if check.high < math.inf else "") if s)
        rows.append(f"| {name} | {check.what} | {min(values):.4g} / {statistics.median(values):.4g} / "
                    f"{max(values):.4g} | {ours} | {bound} |")
        print(rows[-1], file=sys.stderr)
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", action="store_true", help="print REFERENCE.md's table")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--no-clnet", action="store_true", help="PyTorch figures only")
    parser.add_argument("names", nargs="*", help="programs (default: all)")
    args = parser.parse_args(argv)
    names = args.names or sorted(CHECKS)
    if not args.reference:
        return pytest.main(["-q", __file__] + [f"-k={' or '.join(names)}"] * bool(args.names))
    sys.path.insert(0, str(HERE.parent.parent))  # tests/, for conftest's helpers
    print(reference(names, args.seeds, not args.no_clnet))
    return 0


if __name__ == "__main__":
    sys.exit(main())
