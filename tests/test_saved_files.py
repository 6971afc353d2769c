"""Saved files are data, never code.

Every file clnet writes for a model or checkpoint (clnet.save, keras model.save / save_weights,
ModelCheckpoint, BackupAndRestore) is a zip of JSON and .npy members that numpy reads with
allow_pickle=False, or (Keras 3's formats: a `.keras` zip's model.weights.h5, `.weights.h5` files) an
HDF5 tree of numeric datasets without links; none holds a pickle. Loading a tampered file (changed shapes, truncated, extra
members, path-traversal names, a pickled member whose unpickling would write a file) raises a clear
error, leaves the model untouched, and writes nothing anywhere: the folders around the file are
compared before and after, and the pickle's marker file never appears.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import uuid
import zipfile

import numpy as np
import pytest

import clnet
from clnet import keras, nn
from clnet.errors import FileFormatError
from clnet.keras.saving import FileFormatError as KerasFileFormatError

from conftest import small


# --- helpers ------------------------------------------------------------------------------------------
class WritesAFile:
    """Unpickling this object creates `marker` (open(marker, "w")): proof that a pickle ran if it exists."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickled_npy(marker) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([WritesAFile(marker)], dtype=object), allow_pickle=True)
    return buf.getvalue()


def members_of(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def rewrite(path, change):
    """Rewrite the zip at `path` with change(members) applied to its {name: bytes}."""
    members = members_of(path)
    change(members)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)


def assert_numeric_hdf5(data, where):
    """An HDF5 file (bytes) holding only groups and numeric datasets, reached by hard links."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(io.BytesIO(data), "r") as f:
        def check(group):
            for key in group:
                assert isinstance(group.get(key, getlink=True), h5py.HardLink), f"{where}: {key} is a link"
                child = group[key]
                if isinstance(child, h5py.Dataset):
                    assert child.dtype.kind in "biuf", f"{where}: {child.name} holds {child.dtype}"
                else:
                    check(child)
        check(f)


def assert_no_pickle(path):
    """Every member is JSON, an .npy that numpy reads with allow_pickle=False or a numeric HDF5 tree; no pickle
    stream anywhere."""
    if open(path, "rb").read(8) == b"\x89HDF\r\n\x1a\n":
        assert_numeric_hdf5(open(path, "rb").read(), path)
        return
    for name, data in members_of(path).items():
        assert not name.startswith("/") and ".." not in name.split("/"), name
        if name.endswith(".json"):
            json.loads(data.decode("utf-8"))
        elif name == "model.weights.h5":
            assert_numeric_hdf5(data, f"{path}:{name}")
        else:
            assert name.endswith(".npy"), f"{path}: unexpected member {name}"
            version = np.lib.format.read_magic(io.BytesIO(data))
            header = io.BytesIO(data)
            np.lib.format.read_magic(header)
            shape, _, dtype = (np.lib.format.read_array_header_1_0(header) if version == (1, 0)
                               else np.lib.format.read_array_header_2_0(header))
            assert not dtype.hasobject, f"{path}:{name} is an object array (pickled)"
            arr = np.load(io.BytesIO(data), allow_pickle=False)
            assert arr.shape == shape
        assert not data.startswith(b"\x80"), f"{path}:{name} starts like a pickle stream"
    if str(path).endswith(".npz"):
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                npz[key]


def snapshot(*folders):
    """Every file and folder under `folders`, with size and modification time."""
    seen = {}
    for top in folders:
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                p = os.path.join(root, name)
                st = os.lstat(p)
                seen[p] = (st.st_size, st.st_mtime_ns)
    return seen


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Work in tmp_path/work/deep (so '../../x' from there is still inside tmp_path, which is watched)."""
    work = tmp_path / "work" / "deep"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    return tmp_path


def assert_nothing_written(before, sandbox, extra_paths=()):
    after = snapshot(sandbox)
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))[:5]}"
    for p in extra_paths:
        assert not os.path.exists(p), f"{p} was written"


# --- clnet.save / clnet.load ----------------------------------------------------------------------------
def small_training(device, steps=2):
    clnet.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8, device=device), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3, device=device))
    opt = clnet.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    x = clnet.tensor(rng.standard_normal((16, 5)).astype(np.float32), device=device)
    y = clnet.tensor(rng.integers(0, 3, 16), device=device)

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    for _ in range(steps):
        step()
    return model, opt, step


def test_clnet_save_round_trip_is_exact_and_training_continues_identically(device, tmp_path):
    model, opt, step = small_training(device)
    extra = {"epoch": 7, "name": "run-1", "lr": 0.001, "nan": float("nan"), "flag": True, "nothing": None,
             "history": [1.5, 2, (3, "x")], "labels": np.arange(5, dtype=np.int32), 3: "int key"}
    path = tmp_path / "ckpt.npz"
    clnet.save({"model": model.state_dict(), "optim": opt.state_dict(), **extra}, path)
    assert_no_pickle(path)
    back = clnet.load(path, device=device)
    assert back["epoch"] == 7 and back["name"] == "run-1" and back["lr"] == 0.001 and back["flag"] is True
    assert np.isnan(back["nan"]) and back["nothing"] is None and back[3] == "int key"
    assert back["history"] == [1.5, 2, (3, "x")] and isinstance(back["history"][2], tuple)
    assert back["labels"].dtype == np.int32 and np.array_equal(back["labels"], np.arange(5))
    for key, t in model.state_dict().items():
        assert isinstance(back["model"][key], clnet.Tensor) and back["model"][key].device is device
        assert np.array_equal(back["model"][key].numpy(), t.numpy()), key
    # a fresh model + optimizer restored from the file takes exactly the same next step
    clnet.manual_seed(1)
    model2, opt2, step2 = small_training(device, steps=0)
    model2.load_state_dict(back["model"])
    opt2.load_state_dict(back["optim"])
    from clnet.ops import random as device_random
    rng_state = device_random.get_rng_state()      # the same dropout masks for both
    step()
    device_random.set_rng_state(rng_state)
    step2()
    for a, b in zip(model.parameters(), model2.parameters()):
        assert np.array_equal(a.numpy(), b.numpy())


def test_clnet_save_keeps_zero_dimensional_tensors(device, tmp_path):
    """BatchNorm's num_batches_tracked is 0-d: a state_dict holding one loads back with its shape ()."""
    bn = nn.BatchNorm1d(3)
    clnet.save({"bn": bn.state_dict(), "scalar": np.array(2.5, np.float32)}, tmp_path / "bn.npz")
    back = clnet.load(tmp_path / "bn.npz", device=device)
    assert back["bn"]["num_batches_tracked"].shape == () and back["scalar"].shape == ()
    nn.BatchNorm1d(3).load_state_dict(back["bn"])


@pytest.mark.parametrize("bad, words", [
    (lambda: nn.Linear(2, 2), "save module.state_dict()"),
    (lambda: {"f": len}, "builtin_function_or_method"),
    (lambda: {"a": np.array([object()], dtype=object)}, "dtype object"),
    (lambda: {(1, 2): 3}, "keys must be str or int"),
    (lambda: [{1, 2}], "set"),
])
def test_clnet_save_refuses_what_would_need_pickle_and_writes_nothing(device, sandbox, bad, words):
    before = snapshot(sandbox)
    with pytest.raises(TypeError, match=words.replace("(", r"\(").replace(")", r"\)")):
        clnet.save(bad(), "out.npz")
    assert_nothing_written(before, sandbox)


def _edit_manifest(fn):
    def change(members):
        head = json.loads(members["manifest.json"])
        fn(head)
        members["manifest.json"] = json.dumps(head).encode()
    return change


def _swap_array(index, arr):
    def change(members):
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        members[f"arrays/{index:06d}.npy"] = buf.getvalue()
    return change


def _nest(depth):
    node = {"none": None}
    for _ in range(depth):
        node = {"list": [node]}
    return node


# name -> (damage(path, marker, outside), words in the FileFormatError)
CLNET_TAMPERING = {
    "truncated": (lambda p, m, o: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a valid zip"),
    "truncated_to_10_bytes": (lambda p, m, o: p.write_bytes(p.read_bytes()[:10]), "not a valid zip"),
    "empty": (lambda p, m, o: p.write_bytes(b""), "not a valid zip"),
    "extra_member": (lambda p, m, o: rewrite(p, lambda z: z.update({"notes.txt": b"hello"})), "unexpected member"),
    "extra_array": (lambda p, m, o: rewrite(p, lambda z: z.update({"arrays/000099.npy": z["arrays/000000.npy"]})),
                    "do not match the manifest"),
    "path_traversal": (lambda p, m, o: rewrite(p, lambda z: z.update({"../../evil.py": b"import os"})),
                       "unexpected member '../../evil.py'"),
    "path_traversal_inside": (lambda p, m, o: rewrite(p, lambda z: z.update({"arrays/../../evil.npy": b"x"})),
                              "unexpected member"),
    "absolute_path": (lambda p, m, o: rewrite(p, lambda z: z.update({o: b"x"})), "unexpected member"),
    "missing_array": (lambda p, m, o: rewrite(p, lambda z: z.pop("arrays/000001.npy")), "do not match the manifest"),
    "pickled_array": (lambda p, m, o: rewrite(p, lambda z: z.update({"arrays/000000.npy": pickled_npy(m)})),
                      "pickled objects are refused"),
    "pickle_as_manifest": (lambda p, m, o: rewrite(p, lambda z: z.update(
        {"manifest.json": pickle.dumps(WritesAFile(m))})), "not valid JSON"),
    "object_dtype_in_manifest": (lambda p, m, o: rewrite(p, _edit_manifest(
        lambda h: h["arrays"][0].update(dtype="|O"))), "declares dtype object"),
    "changed_shape_in_manifest": (lambda p, m, o: rewrite(p, _edit_manifest(
        lambda h: h["arrays"][0].update(shape=[9, 9]))), "but the manifest says"),
    "changed_shape_in_array": (lambda p, m, o: rewrite(p, _swap_array(0, np.zeros((9, 9), np.float32))),
                               "holds float32 (9, 9), but the manifest says"),
    "changed_dtype_in_array": (lambda p, m, o: rewrite(p, _swap_array(0, np.zeros((8, 5), np.float64))),
                               "holds float64"),
    "garbled_array": (lambda p, m, o: rewrite(p, lambda z: z.update(
        {"arrays/000000.npy": z["arrays/000000.npy"][:70]})), "arrays/000000.npy"),
    "unknown_format": (lambda p, m, o: rewrite(p, _edit_manifest(lambda h: h.update(format="torch/2"))),
                       "unknown format"),
    "array_index_out_of_range": (lambda p, m, o: rewrite(p, _edit_manifest(
        lambda h: h.update(tree={"array": 999}))), "malformed node"),
    "unknown_node_kind": (lambda p, m, o: rewrite(p, _edit_manifest(
        lambda h: h.update(tree={"eval": "__import__('os').system('touch x')"}))), "malformed node"),
    "deep_nesting": (lambda p, m, o: rewrite(p, _edit_manifest(lambda h: h.update(tree=_nest(200)))),
                     "nested more than"),
    "bad_json": (lambda p, m, o: rewrite(p, lambda z: z.update({"manifest.json": b"{not json"})), "not valid JSON"),
    "duplicate_member": (lambda p, m, o: _append_duplicate(p), "duplicate member"),
}


def _append_duplicate(path):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # zipfile warns about the duplicate name it is asked to write
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("arrays/000000.npy", b"x")


@pytest.mark.parametrize("case", sorted(CLNET_TAMPERING))
def test_clnet_load_of_a_tampered_file_raises_and_writes_nothing(device, sandbox, case):
    model, opt, _ = small_training(device, steps=1)
    path = sandbox / "work" / "deep" / "ckpt.npz"
    clnet.save({"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 1}, path)
    marker = sandbox / f"pickle-ran-{uuid.uuid4().hex}"
    outside = f"/tmp/clnet-evil-{uuid.uuid4().hex}"
    damage, words = CLNET_TAMPERING[case]
    damage(path, marker, outside)
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    before = snapshot(sandbox)
    with pytest.raises(FileFormatError) as info:
        clnet.load(path, device=device)
    assert words in str(info.value) and str(path) in str(info.value), str(info.value)
    assert isinstance(info.value, ValueError)
    assert_nothing_written(before, sandbox, [marker, outside])
    for k, v in model.state_dict().items():
        assert np.array_equal(v.numpy(), weights[k])


def test_consistently_changed_shapes_load_but_the_model_refuses_them(device, tmp_path):
    """A file whose manifest and array agree on a new shape is a valid file; load_state_dict then names the
    parameter and both shapes, and copies nothing."""
    model, opt, _ = small_training(device, steps=1)
    path = tmp_path / "ckpt.npz"
    clnet.save(model.state_dict(), path)
    rewrite(path, _swap_array(0, np.ones((8, 6), np.float32)))
    rewrite(path, _edit_manifest(lambda h: h["arrays"][0].update(shape=[8, 6])))
    state = clnet.load(path, device=device)
    before = [p.numpy() for p in model.parameters()]
    with pytest.raises(RuntimeError, match=r"size mismatch for 0\.weight.*\(8, 6\).*\(8, 5\)"):
        model.load_state_dict(state)
    assert all(np.array_equal(p.numpy(), b) for p, b in zip(model.parameters(), before))


def test_saving_is_atomic(device, tmp_path, monkeypatch):
    """A save that fails half-way leaves the previous file intact and no temporary file behind."""
    path = tmp_path / "ckpt.npz"
    clnet.save({"a": clnet.ones(3, device=device)}, path)
    good = path.read_bytes()
    from clnet import serialization
    monkeypatch.setattr(serialization, "npy_bytes", lambda arr: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        clnet.save({"a": clnet.zeros(3, device=device)}, path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]


# --- clnet.keras files ----------------------------------------------------------------------------------
@pytest.fixture
def keras_files(device, tmp_path):
    """A trained small Keras model and every kind of file it writes."""
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = small(device, 32, 16)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = rng.integers(0, 3, n)
    model = keras.Sequential([keras.Input(shape=(6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dropout(0.25), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    backup = tmp_path / "backup"
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[
        keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.keras")),
        keras.callbacks.BackupAndRestore(str(backup), delete_checkpoint=False)])
    model.save(tmp_path / "model.keras")
    model.save_weights(tmp_path / "model.weights.h5")
    files = {"model": tmp_path / "model.keras", "weights": tmp_path / "model.weights.h5",
             "checkpoint": tmp_path / "ckpt-01.keras"}
    found = list(backup.rglob("*.keras"))
    if found:
        files["backup"] = found[0]
    return model, files, x


def test_keras_files_hold_no_pickle(keras_files):
    _, files, _ = keras_files
    assert {"model", "weights", "checkpoint"} <= set(files)
    for path in files.values():
        assert_no_pickle(path)


def _h5_edit(data, change):
    """The bytes of an HDF5 file after change(h5py.File) edited it."""
    h5py = pytest.importorskip("h5py")
    buf = io.BytesIO(data)
    with h5py.File(buf, "a") as f:
        change(f)
    return buf.getvalue()


def _reshape_first_kernel(f):
    del f["layers/dense/vars/0"]
    f["layers/dense/vars"].create_dataset("0", data=np.ones((7, 8), np.float32))


def _extra_dataset(f):
    f.create_dataset("layers/evil", data=np.ones(3, np.float32))


def _link_out(outside):
    def change(f):
        del f["layers/dense/vars/1"]
        f["layers/dense/vars/1"] = pytest.importorskip("h5py").ExternalLink(outside, "/x")
    return change


def _string_dataset(f):
    del f["layers/dense/vars/1"]
    f["layers/dense/vars"].create_dataset("1", data=np.array([b"cos\nsystem\n"]))


def _in_model(change):
    """Apply an HDF5 edit to a .keras zip's model.weights.h5 member."""
    return lambda p, m, o: rewrite(p, lambda z: z.update({"model.weights.h5": _h5_edit(z["model.weights.h5"],
                                                                                       change(o))}))


def _in_weights(change):
    return lambda p, m, o: p.write_bytes(_h5_edit(p.read_bytes(), change(o)))


KERAS_TAMPERING = {"model": {
    "truncated": (lambda p, m, o: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3]), "not a valid zip"),
    "extra_member": (lambda p, m, o: rewrite(p, lambda z: z.update({"weights/000099.npy": b"x"})),
                     "unexpected member"),
    "path_traversal": (lambda p, m, o: rewrite(p, lambda z: z.update({"../../evil.py": b"import os"})),
                       "unexpected member '../../evil.py'"),
    "absolute_path": (lambda p, m, o: rewrite(p, lambda z: z.update({o: b"x"})), "unexpected member"),
    "pickled_weight": (lambda p, m, o: rewrite(p, lambda z: z.update({"model.weights.h5": pickled_npy(m)})),
                       "not a valid HDF5"),
    "changed_shape": (_in_model(lambda o: _reshape_first_kernel), "in the file"),
    "linked_weight": (_in_model(_link_out), "link"),
    "string_weight": (_in_model(lambda o: _string_dataset), "only numbers"),
}, "weights": {
    "truncated": (lambda p, m, o: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3]), "not a valid HDF5"),
    "extra_member": (_in_weights(lambda o: _extra_dataset), "unexpected dataset"),
    "pickled_weight": (lambda p, m, o: p.write_bytes(pickled_npy(m)), "not a valid zip"),
    "changed_shape": (_in_weights(lambda o: _reshape_first_kernel), "in the file"),
    "linked_weight": (_in_weights(_link_out), "link"),
    "string_weight": (_in_weights(lambda o: _string_dataset), "only numbers"),
}}
KERAS_CASES = [(kind, case) for kind in KERAS_TAMPERING for case in sorted(KERAS_TAMPERING[kind])]


def _npy(arr):
    buf = io.BytesIO()
    np.save(buf, arr.astype(np.float32), allow_pickle=False)
    return buf.getvalue()


@pytest.mark.parametrize("kind,case", KERAS_CASES)
def test_keras_load_of_a_tampered_file_raises_and_writes_nothing(keras_files, sandbox, kind, case):
    model, files, x = keras_files
    path = sandbox / "work" / "deep" / (f"tampered-{kind}.keras" if kind == "model" else "tampered.weights.h5")
    path.write_bytes(files[kind].read_bytes())
    marker = sandbox / f"pickle-ran-{uuid.uuid4().hex}"
    outside = f"/tmp/clnet-evil-{uuid.uuid4().hex}"
    damage, words = KERAS_TAMPERING[kind][case]
    damage(path, marker, outside)
    weights = [w.numpy() for w in model.weights]
    before = snapshot(sandbox)
    with pytest.raises(KerasFileFormatError) as info:
        if kind == "model":
            keras.models.load_model(path)
        else:
            model.load_weights(path)
    assert words in str(info.value) and str(path) in str(info.value), str(info.value)
    assert isinstance(info.value, FileFormatError), "except clnet.FileFormatError must catch Keras files' errors"
    assert_nothing_written(before, sandbox, [marker, outside])
    assert all(np.array_equal(w.numpy(), b) for w, b in zip(model.weights, weights)), "the model was changed"
