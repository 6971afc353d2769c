"""Runs the public Keras 3 programs of this folder on clnet, each with only its import changed, and checks
each one's result against a bound taken from running the same program on real Keras 3 (torch backend).

    CLNET_TEST_DEVICES=pocl pytest -q tests/programs/keras/run_keras_programs.py      # what CI would run
    python tests/programs/keras/run_keras_programs.py --reference [NAME ...]          # REFERENCE.md's table

The programs say `from clnet import keras` and `from clnet.keras import layers` (and, for the torch-style
training loops of the Keras 3 guides, `import clnet as torch`). For Keras the runner rewrites those import
lines, and only those, to `import keras`, `from keras import layers`, `import torch`: that is the whole
difference between the two runs. When Keras 3 is installed each test runs the program on Keras first (with
KERAS_BACKEND=torch; it must stay inside its bound there too, so a bound cannot drift from what Keras does),
then on clnet. Programs run in this process, from a temporary working directory, with their output captured;
the result is read from the program's variables or printed lines (CHECKS below).

A program that needs a piece of clnet.keras still being built (Conv1D, LSTM, Embedding, ...) is an expected
failure naming the missing piece while that piece is absent, and runs as soon as it lands.

This file is not collected by a plain `pytest` run (its name does not start with test_).
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

os.environ["KERAS_BACKEND"] = "torch"  # before anything imports keras: the guides' torch loops need it

import numpy as np  # noqa: E402
import pytest  # noqa: E402

HERE = Path(__file__).resolve().parent
IMPORT_LINE = re.compile(r"^(\s*)(import|from)\s+clnet\b")
COMMAND = "KERAS_BACKEND=torch python tests/programs/keras/run_keras_programs.py --reference --seeds 3"


@dataclass
class Check:
    """How to read a program's result and the bound it must meet, with the Keras figures it came from."""

    what: str                 # what the figure is, for messages and REFERENCE.md
    read: object              # (globals, stdout) -> float
    low: float = -math.inf    # the figure must lie in [low, high]
    high: float = math.inf
    needs: tuple = ()         # (path below clnet.keras, owner): "layers.Conv1D", "Model.fit(class_weight=)"
    why: str = ""             # how the bound was chosen from the Keras figures
    bug: str = ""             # a known clnet bug that stops the program: an error there is an expected failure
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


# Pieces other engineers are adding to clnet.keras (paths below clnet.keras, with who brings them).
def layer(name, owner="keras layers"):
    return (f"layers.{name}", owner)


CONV1D, GAP1D, GMP1D = layer("Conv1D"), layer("GlobalAveragePooling1D"), layer("GlobalMaxPooling1D")
EMBEDDING, LSTM, GRU = layer("Embedding"), layer("LSTM", "keras RNN layers"), layer("GRU", "keras RNN layers")
BIDIRECTIONAL = layer("Bidirectional", "keras RNN layers")
CONV2DT, UPSAMPLING2D, LEAKYRELU = layer("Conv2DTranspose"), layer("UpSampling2D"), layer("LeakyReLU")
MHA, LAYERNORM = layer("MultiHeadAttention"), layer("LayerNormalization")

# Bounds: Keras figures over 3 runs (seeds 0-2) are in REFERENCE.md; a bound sits outside Keras's range by a
# margin (clnet draws other random numbers for the same seed, so a clnet run is one more draw from the same
# distribution, not a copy of a Keras run).
MODEL_AS_MODULE = ("Model.parameters", "keras models as clnet.nn Modules")
CHECKS = {
    "mnist_convnet": Check("test accuracy", var("test_accuracy"), low=0.5, why="0.72-0.75 on Keras; chance is 0.1"),
    "intro_to_keras_for_engineers": Check("accuracy of the reloaded model's predictions", var("test_accuracy"),
                                          low=0.6, why="0.80-0.89 on Keras; chance is 0.1"),
    "sequential_model": Check("test accuracy after fine-tuning the head", var("test_accuracy"), low=0.35,
                              why="0.58-0.73 on Keras; chance is 0.1"),
    "functional_api": Check("test accuracy", var("test_accuracy"), low=0.55, why="0.72-0.78 on Keras; chance is 0.1"),
    "functional_api_toy_resnet": Check("test accuracy", var("test_accuracy"), low=0.4,
                                       why="0.92-1.0 on Keras (clnet 0.8); chance is 0.1"),
    "training_with_built_in_methods": Check("test accuracy of the first model", var("test_accuracy"), low=0.45,
                                            why="0.60-0.63 on Keras (4 epochs of RMSprop); chance is 0.1"),
    "custom_training_loop_torch": Check("validation accuracy after 3 epochs", var("val_accuracy"), low=0.55,
                                        why="0.73-0.82 on Keras; chance is 0.1"),
    "custom_training_loop_torch_optim": Check("test accuracy", var("test_accuracy"), low=0.5,
                                              why="0.68-0.70 on Keras; chance is 0.1",
                                              needs=(MODEL_AS_MODULE,)),
    "custom_train_step_torch": Check("MAE of the low-level model's last epoch", var("final_mae"), high=0.5,
                                     why="0.38-0.40 on Keras; "
                                         "targets uniform in [0, 1): their mean scores 0.25, untrained about 1"),
    "writing_your_own_callbacks": Check("test MAE of the digit-value regression", var("test_mae"), high=2.45,
                                        why="2.05-2.15 on Keras; "
                                            "the mean digit value scores about 2.5, an untrained Dense(1) about 4.5"),
    "making_new_layers_and_models_via_subclassing": Check("VAE loss (MSE + KL) of the last epoch", var("vae_loss"),
                                                          high=0.09,
                                                          why="0.0731-0.0733 on Keras; "
                                                              "the untrained VAE's MSE is about 0.11"),
    "serialization_and_saving": Check("largest prediction difference over the save/load round trips",
                                      var("largest_gap"), high=1e-5,
                                      why="0 on every Keras run: same weights, same math"),
    "imbalanced_classification": Check("validation recall (frauds caught)", var("val_recall"), low=0.5,
                                       why="1.0 on every Keras run (class_weight favours the frauds); "
                                           "without it most frauds are missed"),
    "demo_custom_layer_backend_agnostic": Check("validation MSE", var("val_mse"), high=0.3,
                                                why="0.12-0.15 on Keras; "
                                                    "predicting 0 gives the targets' variance, about 1"),
    "timeseries_classification_from_scratch": Check("test accuracy", var("test_accuracy"), low=0.75,
                                                    why="0.955-0.98 on Keras; two balanced classes: chance is 0.5",
                                                    needs=(CONV1D, GAP1D)),
    "text_classification_from_scratch": Check("test accuracy", var("test_accuracy"), low=0.75,
                                              why="0.91-0.935 on Keras; two balanced classes: chance is 0.5",
                                              needs=(EMBEDDING, CONV1D, GMP1D)),
    "bidirectional_lstm_imdb": Check("validation accuracy", var("val_accuracy"), low=0.7,
                                     why="0.89-0.95 on Keras; two balanced classes: chance is 0.5",
                                     needs=(EMBEDDING, LSTM, BIDIRECTIONAL)),
    "autoencoder": Check("binary cross-entropy of the denoised test images", var("denoising_loss"), high=0.32,
                         why="0.273-0.277 on Keras; an untrained decoder (outputs near 0.5) gives 0.69",
                         needs=(CONV2DT,)),
    "vae": Check("reconstruction loss per image (summed BCE)", var("reconstruction_loss"), high=400,
                 why="316-326 on Keras; outputs of 0.5 everywhere give 784 ln 2 = 543", needs=(CONV2DT,)),
    "timeseries_weather_forecasting": Check("validation MSE of the best checkpoint", var("val_mse"), high=0.4,
                                            why="0.210-0.224 on Keras; predicting the mean gives about 1 (normalised)",
                                            needs=(LSTM,)),
    "timeseries_classification_transformer": Check("test accuracy", var("test_accuracy"), low=0.55,
                                                   why="0.61-0.71 on Keras (a small model, 8 epochs); chance is 0.5",
                                                   needs=(MHA, LAYERNORM, CONV1D, GAP1D)),
    "collaborative_filtering_movielens": Check("validation loss / that of predicting the mean rating",
                                               var("loss_vs_mean"), high=0.99,
                                               why="0.954-0.963 on Keras; 1 for a model that learned only the mean",
                                               needs=(EMBEDDING,)),
    "addition_rnn": Check("validation accuracy per answer character", var("val_char_accuracy"), low=0.6,
                          why="0.755-0.795 on Keras; each position's most common character scores about 0.5",
                          needs=(LSTM, layer("RepeatVector"))),
    "lstm_character_level_text_generation": Check("loss of the last epoch (nats per character)", var("final_loss"),
                                                  high=2.3,
                                                  why="1.85-1.90 on Keras; uniform over the 22 characters: 3.1",
                                                  needs=(LSTM,)),
    "functional_api_multi_io": Check("weighted total loss of the last epoch", var("final_loss"), high=0.5,
                                     why="0.25-0.32 on Keras; untrained: about 0.69 + 0.2 * 1.39 = 0.97",
                                     needs=(EMBEDDING, LSTM)),
    "understanding_masking_and_padding": Check("test accuracy of the masked LSTM", var("test_accuracy"), low=0.75,
                                               why="0.945-0.98 on Keras; the majority class alone gives about 0.5",
                                               needs=((EMBEDDING[0] + "(mask_zero=)", EMBEDDING[1]), layer("Masking"),
                                                      LSTM)),
    "timeseries_anomaly_detection": Check("share of flagged windows that overlap the anomaly",
                                          var("flagged_on_anomaly"), low=0.5,
                                          why="0.82-0.93 on Keras; "
                                              "windows away from the anomaly stay under the threshold",
                                          needs=(CONV1D, layer("Conv1DTranspose"))),
}


# --- running a program ---------------------------------------------------------------------------------
def _to_keras(line: str) -> str:
    """One clnet import line as the Keras program has it."""
    line = re.sub(r"^(\s*)from\s+clnet\s+import\s+keras\b", r"\1import keras", line)
    line = re.sub(r"^(\s*)from\s+clnet\.keras\b", r"\1from keras", line)
    line = re.sub(r"^(\s*)import\s+clnet\s+as\s+torch\b", r"\1import torch", line)
    line = re.sub(r"^(\s*)import\s+clnet\.keras\s+as\s+keras\b", r"\1import keras", line)
    return line


def source_for(name: str, framework: str) -> str:
    """The program's text for `framework` ("clnet" or "keras"): as written, or with its clnet imports naming Keras."""
    text = (HERE / f"{name}.py").read_text()
    if framework == "clnet":
        return text
    return "".join(_to_keras(line) if IMPORT_LINE.match(line) else line for line in text.splitlines(keepends=True))


def check_only_imports_differ(name: str) -> None:
    """The Keras text differs from the clnet text in import lines only, every clnet import has a Keras
    spelling, and the clnet text never imports keras or torch itself (a program that did would measure the
    real framework twice)."""
    ours, theirs = source_for(name, "clnet").splitlines(), source_for(name, "keras").splitlines()
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        if a != b:
            assert IMPORT_LINE.match(a), f"{name}: a line other than an import differs: {a!r}"
        elif IMPORT_LINE.match(a):
            raise AssertionError(f"{name}: a clnet import with no Keras spelling: {a!r}")
    for line in ours:
        assert not re.match(r"^\s*(import|from)\s+(torch|keras|tensorflow)\b", line), \
            f"{name}: imports the real framework itself: {line!r}"


def missing_pieces(check: Check) -> list:
    """The `needs` entries clnet.keras does not have yet: attribute paths below clnet.keras, optionally with
    a keyword argument the function must take ("Model.fit(class_weight=)")."""
    from clnet import keras
    return [f"clnet.keras.{path} ({owner})" for path, owner in check.needs if not _has(keras, path)]


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


def _keras_module(framework: str):
    if framework == "keras":
        return importlib.import_module("keras")
    from clnet import keras
    return keras


def run_program(name: str, framework: str, seed: int | None = None) -> tuple[dict, str, float]:
    """Execute the program as __main__ in a scratch directory; returns (globals, stdout, seconds)."""
    code = compile(source_for(name, framework), str(HERE / f"{name}.py"), "exec")
    env = {"__name__": "__main__", "__file__": str(HERE / f"{name}.py")}
    out = io.StringIO()
    old_argv, old_cwd, old_path = sys.argv, os.getcwd(), list(sys.path)
    default = _default_device_state()
    keras = _keras_module(framework)
    if framework == "keras":
        if keras.backend.backend() != "torch":
            raise RuntimeError(f"Keras was imported with the {keras.backend.backend()} backend before this "
                               "runner; run it with KERAS_BACKEND=torch")
        import torch
        torch.set_num_threads(1)  # tiny models: threads only fight the other jobs on a small machine
    keras.utils.clear_session()
    real_seed = keras.utils.set_random_seed
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        real_seed(seed)
        # a program that seeds itself gets its seed shifted by the run's, so runs differ as runs of
        # unseeded programs do (the program's text is unchanged)
        keras.utils.set_random_seed = lambda s, _shift=seed: real_seed(s + _shift)
    sys.modules.pop("offline_data", None)  # this folder's, not tests/programs/torch's
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(out):
            os.chdir(scratch)
            sys.argv = [str(HERE / f"{name}.py")] + CHECKS[name].extra_argv
            sys.path.insert(0, str(HERE))
            exec(code, env)
    finally:
        keras.utils.set_random_seed = real_seed
        sys.argv, sys.path[:] = old_argv, old_path
        sys.modules.pop("offline_data", None)
        os.chdir(old_cwd)
        _restore_default_device(default)
    return env, out.getvalue(), time.perf_counter() - start


def _default_device_state():
    from clnet.backend import devices
    return devices._DEFAULT


def _restore_default_device(state):
    """Programs may change clnet's default device or dtype: undo it for the next program."""
    from clnet.backend import devices
    import clnet
    devices._DEFAULT = state
    clnet.set_default_dtype(clnet.float32)


def measure(name: str, framework: str, seed: int | None = None) -> tuple[float, str, float]:
    g, out, seconds = run_program(name, framework, seed)
    return float(CHECKS[name].read(g, out)), out, seconds


def assert_within(name: str, value: float, framework: str, out: str) -> None:
    check = CHECKS[name]
    tail = "\n".join(out.splitlines()[-15:])
    assert check.low <= value <= check.high, (
        f"{name} on {framework}: {check.what} = {value:.6g}, outside the bound [{check.low}, {check.high}] "
        f"(REFERENCE.md has Keras's figures); the program's last lines:\n{tail}")


# --- pytest -----------------------------------------------------------------------------------------------
def _keras_available() -> bool:
    """Real Keras runs each program first when it is installed, unless CLNET_PROGRAMS_KERAS=0 (CI sets it:
    REFERENCE.md holds Keras's figures, and running them again doubled the stage's time)."""
    if os.environ.get("CLNET_PROGRAMS_KERAS", "1") == "0":
        return False
    try:
        import keras  # noqa: F401
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
    if _keras_available():
        value, out, _ = measure(name, "keras", seed=0)
        assert_within(name, value, "Keras", out)
    missing = missing_pieces(CHECKS[name])
    if missing:
        pytest.xfail("needs " + ", ".join(missing))
    try:
        value, out, seconds = measure(name, "clnet", seed=0)
    except Exception as err:
        if CHECKS[name].bug:
            pytest.xfail(f"known clnet bug: {CHECKS[name].bug} ({type(err).__name__}: {err})")
        raise
    print(f"{name}: {CHECKS[name].what} = {value:.6g} on clnet ({seconds:.1f} s)")
    assert_within(name, value, "clnet", out)


# --- the reference table --------------------------------------------------------------------------------
def reference(names: list[str], seeds: int, clnet_too: bool) -> str:
    """Markdown rows: each program's figure on Keras over `seeds` runs (and on clnet), and its bound."""
    import torch
    torch.set_num_threads(1)
    rows = ["| program | figure | Keras 3 (torch) min / median / max, seeds 0-%d | s/run | clnet (seed 0) | bound |"
            % (seeds - 1), "|---|---|---|---|---|---|"]
    for name in names:
        check = CHECKS[name]
        runs = [measure(name, "keras", seed) for seed in range(seeds)]
        values = [r[0] for r in runs]
        seconds = statistics.median(r[2] for r in runs)
        missing = missing_pieces(check)
        ours = "needs " + ", ".join(m.split(" (")[0].replace("clnet.keras.", "") for m in missing) if missing else ""
        if clnet_too and not missing:
            try:
                ours = f"{measure(name, 'clnet', 0)[0]:.4g}"
            except Exception as err:  # the table still gets written; the test reports the failure
                ours = f"error: {type(err).__name__}"
        bound = " and ".join(s for s in (f">= {check.low:g}" if check.low > -math.inf else "",
                                         f"<= {check.high:g}" if check.high < math.inf else "") if s)
        rows.append(f"| {name} | {check.what} | {min(values):.4g} / {statistics.median(values):.4g} / "
                    f"{max(values):.4g} | {seconds:.1f} | {ours} | {bound} |")
        print(rows[-1], file=sys.stderr)
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", action="store_true", help="print REFERENCE.md's table")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-clnet", action="store_true", help="Keras figures only")
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
