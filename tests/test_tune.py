"""clnet tune: wrong candidates are rejected, the tuning file round-trips into the profile, a damaged file is
ignored with a warning, tuned parameters give numpy's results, and `clnet tune --quick` runs end to end.

Speed is not asserted here (benchmarks/ and `clnet tune` itself measure it). Every test uses a temporary
CLNET_CACHE_DIR, and the device's profile is rebuilt afterwards (the suite runs with CLNET_TUNING=0).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from clnet import cli, tune
from clnet.backend import profiles, tuning_file
from clnet.backend.devices import all_devices

from conftest import small


@pytest.fixture(autouse=True)
def tuning_dir(tmp_path, monkeypatch):
    """A private cache dir, reading the tuning file enabled, warnings shown again, profiles rebuilt after."""
    monkeypatch.setenv("CLNET_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CLNET_TUNING", "1")
    monkeypatch.setattr(tuning_file, "_WARNED", set())
    yield tmp_path
    for dev in all_devices():
        dev._profile = None


def other_params(device) -> dict:
    """Valid parameters that differ from the shipped defaults in every tunable field but the variant."""
    base = profiles.profile_for(device, tuned=False)
    if base.matmul_variant == "cpu":
        return tune._cpu(4, 1, 2)        # 4 x 16 block, 2 rows per group (default 8 x 32, 8 rows)
    return dict(matmul_variant="gpu", matmul_tile_m=16, matmul_tile_n=16, matmul_tile_k=4,
                matmul_wpt_m=2, matmul_wpt_n=2)


def default_params(device) -> dict:
    return tune._params(profiles.profile_for(device, tuned=False))


def tiny_operands(device, rng):
    shapes = small(device, [tune.Shape(70, 45, 90)], [tune.Shape(20, 12, 9)])
    ops = [tune._Operands(device, s, rng) for s in shapes]
    checks = [tune._Operands(device, tune.CHECK_SHAPE, rng, layout) for layout in ("nn", "nt", "tn")]
    return ops, checks


# --- verification ---------------------------------------------------------------------------------
class _Skewed:
    """A product whose one element is off by 50x the accepted rounding error (a subtle miscompile)."""

    def __init__(self, y, ops):
        self.y, self.ops = y, ops

    def numpy(self):
        x = self.y.numpy().astype(np.float64)
        x[-1, 1] += 50 * tune.bound(self.ops.shape.k) * self.ops.scale[-1, 1]
        return x


def test_correct_candidates_pass_and_wrong_ones_are_rejected(device, monkeypatch):
    rng = np.random.default_rng(0)
    ops, checks = tiny_operands(device, rng)
    base = profiles.profile_for(device, tuned=False)
    good = tune.measure(device, default_params(device), base, ops, checks, reps=1)
    assert not good.rejected and len(good.gflops) == len(ops) and good.score > 0
    real = tune._product
    monkeypatch.setattr(tune, "_product", lambda o: _Skewed(real(o), o))
    bad = tune.measure(device, default_params(device), base, ops, checks, reps=1)
    assert bad.rejected.startswith("wrong result") and bad.score == 0.0
    assert device.profile == profiles.profile_for(device, tuned=False)   # restored after the trial


def test_search_never_picks_a_wrong_candidate_even_the_fastest(device, monkeypatch):
    """Two candidates: the wrong one is 'timed' 100x faster; the tuner must still pick the right one."""
    wrong, right = other_params(device), default_params(device)
    real_product, real_time = tune._product, tune._time
    current = {}

    def product(ops):
        y = real_product(ops)
        return _Skewed(y, ops) if current["params"] == wrong else y

    def measure(device_, params, *args, **kwargs):
        current["params"] = params
        return real_measure(device_, params, *args, **kwargs)

    real_measure = tune.measure
    monkeypatch.setattr(tune, "_product", product)
    monkeypatch.setattr(tune, "measure", measure)
    monkeypatch.setattr(tune, "_time", lambda d, o, r: real_time(d, o, r) * (100 if current["params"] == wrong else 1))
    monkeypatch.setattr(tune, "stage1", lambda *a: [wrong])
    monkeypatch.setattr(tune, "stage2", lambda *a: [])
    lines = []
    result = tune.tune(device, shapes=small(device, [tune.Shape(40, 33, 50)], [tune.Shape(9, 7, 5)]),
                       budget=600, reps=1, log=lines.append)
    assert result.winner.params == right, "\n".join(lines)
    assert any("REJECTED: wrong result" in line for line in lines), "\n".join(lines)
    stored = json.loads(tuning_file.path().read_text())["devices"][tuning_file.device_key(device)]
    assert stored["params"] == right


def test_bound_separates_rounding_from_a_dropped_term():
    """float32 products in several summation orders stay under the bound; one missing term does not."""
    rng = np.random.default_rng(3)
    for k in (5, 64, 1000, 4096):
        a = rng.standard_normal((16, k)).astype(np.float32)
        b = rng.standard_normal((k, 8)).astype(np.float32)
        scale = np.abs(a).astype(np.float64) @ np.abs(b)
        ref = a.astype(np.float64) @ b
        f32 = a @ b                                                       # BLAS order
        seq = np.zeros((16, 8), np.float32)
        for i in range(k):                                                # sequential order
            seq += a[:, i:i + 1] * b[i:i + 1, :]
        for got in (f32, seq):
            assert np.max(np.abs(got - ref) / scale) <= tune.bound(k)
        dropped = ref - a[:, :1].astype(np.float64) * b[:1, :]
        assert np.max(np.abs(dropped - ref) / scale) > tune.bound(k)


# --- the tuning file and the profile ---------------------------------------------------------------
def test_stored_parameters_round_trip_into_the_profile(device, monkeypatch):
    params = other_params(device)
    path = tuning_file.store(device, params, extra=dict(note="test"))
    data = json.loads(path.read_text())
    assert data["format"] == tuning_file.FORMAT and data["schema"] == tuning_file.SCHEMA
    assert data["devices"][tuning_file.device_key(device)]["params"] == params
    assert tuning_file.tuned_params(device) == params
    prof = profiles.profile_for(device)
    assert tune._params(prof) == params
    assert any("clnet tune" in q for q in prof.quirks)
    monkeypatch.setenv("CLNET_TUNING", "0")                      # the switch the test suite uses
    assert tune._params(profiles.profile_for(device)) == default_params(device)


def test_tuned_parameters_give_numpys_results(device, rng):
    """Through the public ops, in several layouts and with edges, under the tuned profile."""
    import clnet
    from clnet.ops.matmul import matmul_ex
    tuning_file.store(device, other_params(device))
    device._profile = None
    assert tune._params(device.profile) == other_params(device)
    for m, n, k in small(device, [(1, 1, 1), (37, 29, 53), (130, 70, 300), (64, 100, 1000)],
                         [(1, 1, 1), (13, 9, 11), (33, 17, 20)]):
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        bias = rng.standard_normal(n).astype(np.float32)
        ta, tb = clnet.tensor(a, device=device), clnet.tensor(b, device=device)
        scale = np.abs(a).astype(np.float64) @ np.abs(b) + np.abs(bias)
        ref = a.astype(np.float64) @ b
        got = (ta @ tb).numpy()
        assert np.max(np.abs(got - ref) / scale) <= tune.bound(k), (m, n, k)
        tbt = clnet.tensor(np.ascontiguousarray(b.T), device=device)
        got = matmul_ex(ta, tbt, trans_b=True, bias=clnet.tensor(bias, device=device), activation="relu").numpy()
        assert np.max(np.abs(got - np.maximum(ref + bias, 0)) / scale) <= tune.bound(k), (m, n, k, "nt")


@pytest.mark.parametrize("content", [
    "{not json", "", "[]", '{"format": "someone-else", "schema": 1, "devices": {}}',
    '{"format": "clnet-tuning", "schema": 999, "devices": {}}',
    '{"format": "clnet-tuning", "schema": 1, "devices": []}',
    "KEY:{\"params\": {\"matmul_wpt_m\": \"eight\"}}",
    "KEY:{\"params\": {\"matmul_wpt_m\": 0}}",
    "KEY:{\"params\": {\"build_options\": [\"-DEVIL\"]}}",
    "KEY:{\"params\": {\"matmul_variant\": \"fpga\"}}",
    "KEY:[1, 2]",
], ids=["broken-json", "empty", "list", "foreign", "future-schema", "devices-list", "string-value", "zero",
        "unknown-key", "unknown-variant", "entry-list"])
def test_damaged_or_foreign_file_is_ignored_with_a_warning(device, content):
    path = tuning_file.path()
    path.parent.mkdir(parents=True, exist_ok=True)
    if content.startswith("KEY:"):
        entry = json.loads(content[4:])
        if isinstance(entry, dict):
            entry["template"] = tuning_file.template_hash()
        content = json.dumps({"format": tuning_file.FORMAT, "schema": tuning_file.SCHEMA,
                              "devices": {tuning_file.device_key(device): entry}})
    path.write_text(content)
    with pytest.warns(tuning_file.TuningFileWarning, match="ignoring the tuning file"):
        prof = profiles.profile_for(device)
    assert tune._params(prof) == default_params(device)


def test_stale_entries_are_ignored_silently(device, recwarn):
    path = tuning_file.store(device, other_params(device))
    data = json.loads(path.read_text())
    data["devices"][tuning_file.device_key(device)]["template"] = "0" * 16   # tuned for other kernels
    path.write_text(json.dumps(data))
    assert tune._params(profiles.profile_for(device)) == default_params(device)
    assert not [w for w in recwarn if issubclass(w.category, tuning_file.TuningFileWarning)]


def test_store_keeps_other_devices_and_replaces_a_foreign_file(device):
    path = tuning_file.path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("garbage")
    with pytest.warns(tuning_file.TuningFileWarning, match="replacing"):
        tuning_file.store(device, other_params(device))
    data = json.loads(path.read_text())
    data["devices"]["Some GPU | 1.0 | Other"] = {"params": {"matmul_wpt_m": 2}}
    path.write_text(json.dumps(data))
    tuning_file.store(device, default_params(device))
    devices = json.loads(path.read_text())["devices"]
    assert set(devices) == {"Some GPU | 1.0 | Other", tuning_file.device_key(device)}
    assert not list(path.parent.glob("*.tmp"))


# --- the command ---------------------------------------------------------------------------------------
def test_cli_tune_quick_end_to_end(device, capsys):
    code = cli.main(["tune", "--quick", "--budget", "1", "--reps", "1", "--device", device.spec,
                     "--shapes", small(device, "24x20x28", "8x6x5")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "winner:" in out and "GFLOP/s" in out and "stored in" in out
    entry = json.loads(tuning_file.path().read_text())["devices"][tuning_file.device_key(device)]
    assert entry["template"] == tuning_file.template_hash()
    assert tune._params(profiles.profile_for(device)) == entry["params"]

    assert cli.main(["tune", "--show"]) == 0
    out = capsys.readouterr().out
    assert tuning_file.device_key(device) in out and "stale" not in out
    assert cli.main(["cache", "info"]) == 0
    assert str(tuning_file.path()) in capsys.readouterr().out
    assert cli.main(["tune", "--forget", "--device", device.spec]) == 0
    assert "removed" in capsys.readouterr().out
    assert tuning_file.tuned_params(device) == {}


def test_cli_tune_rejects_bad_shapes(capsys):
    assert cli.main(["tune", "--shapes", "12x0x3"]) == 2
    assert "MxNxK" in capsys.readouterr().err


def test_shape_class_parameters_round_trip_and_are_used_per_product(device, rng):
    """`clnet tune` may store parameters for one class of products (thin ones) beside the device's; the
    profile then gives them to exactly that class, and the products stay numpy's."""
    import clnet
    tuning_file.store(device, default_params(device), classes={"thin": other_params(device)})
    assert tuning_file.tuned_classes(device) == {"thin": other_params(device)}
    device._profile = None
    prof = device.profile
    assert tune._params(prof.for_matmul(512, 512, 512)) == default_params(device)
    assert tune._params(prof.for_matmul(64, 100, 1000)) == other_params(device)
    assert prof.as_dict()["matmul_classes"] == {"thin": other_params(device)}
    for m, n, k in small(device, [(64, 100, 300), (300, 260, 40)], [(9, 13, 11)]):
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        got = (clnet.tensor(a, device=device) @ clnet.tensor(b, device=device)).numpy()
        scale = np.abs(a).astype(np.float64) @ np.abs(b)
        assert np.max(np.abs(got - a.astype(np.float64) @ b) / scale) <= tune.bound(k), (m, n, k)


def test_class_winners_only_where_another_candidate_wins_that_class():
    shapes = (tune.Shape(1024, 1024, 1024), tune.Shape(2048, 2048, 2048), tune.Shape(64, 100, 1000),
              tune.Shape(4096, 64, 256))
    big_tiles = tune.Trial(dict(matmul_tile_m=128), [900.0, 1000.0, 10.0, 20.0])
    small_tiles = tune.Trial(dict(matmul_tile_m=32), [500.0, 520.0, 60.0, 80.0])
    assert set(tune.class_winners(shapes, big_tiles, [big_tiles, small_tiles])) == {"thin"}
    assert tune.class_winners(shapes, big_tiles, [big_tiles, small_tiles])["thin"] is small_tiles
    assert tune.class_winners(shapes, small_tiles, [big_tiles, small_tiles])["large"] is big_tiles
    assert tune.class_winners(shapes[:2], big_tiles, [big_tiles, small_tiles]) == {}  # one class timed only
