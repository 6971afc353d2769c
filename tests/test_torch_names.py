"""PyTorch's spellings: dtype aliases, clnet.Size, devices the way PyTorch programs ask for them
(torch.cuda, torch.accelerator, torch.backends, "cuda", printing), and AttributeErrors that say what to use.

The device rules run on fake machines (no driver involved), so they are checked on every machine;
the `device` tests use the real devices under test.
"""
from __future__ import annotations

import numpy as np
import pytest

import clnet
import clnet as torch  # the spelling programs use
from clnet.backend import devices as D
from clnet.errors import DeviceNotFoundError


def fake(p, name, platform, type, vendor, unified=True, driver="1.0", mem=8 << 30):
    return D.Device(cl_device=None, platform_index=p, device_index=0, name=name, platform_name=platform,
                    platform_version=f"OpenCL 3.0 {platform}", vendor=vendor, type=type, compute_units=8,
                    global_mem=mem, max_alloc=mem // 4, local_mem=65536, local_mem_is_local=True,
                    max_work_group_size=1024, max_work_item_sizes=(1024, 1024, 1024), fp16=True, fp64=True,
                    opencl_c_version="OpenCL C 1.2 fake", driver_version=driver, host_unified_memory=unified,
                    preferred_vector_width_float=1)


OCLGRIND = fake(0, "Oclgrind Simulator", "Oclgrind", "gpu", "oclgrind")
POCL = fake(1, "pthread-cpu", "Portable Computing Language", "cpu", "pocl", driver="3.1+debian")
POCL_WHEEL = fake(2, "pthread-cpu", "Portable Computing Language", "cpu", "pocl", driver="3.0-rc2")
LLVMPIPE = fake(3, "llvmpipe (LLVM 15.0.6, 256 bits)", "rusticl", "cpu", "mesa")
IGPU = fake(4, "Intel(R) UHD Graphics 630", "Intel(R) OpenCL Graphics", "gpu", "intel", mem=6 << 30)
BIG = fake(5, "NVIDIA H200", "NVIDIA CUDA", "gpu", "nvidia", unified=False, mem=140 << 30)
SMALL = fake(6, "NVIDIA GeForce GTX 1650", "NVIDIA CUDA", "gpu", "nvidia", unified=False, mem=4 << 30)
GPU_MACHINE = [OCLGRIND, POCL, POCL_WHEEL, LLVMPIPE, IGPU, BIG, SMALL]
CPU_MACHINE = [OCLGRIND, POCL, POCL_WHEEL, LLVMPIPE]


@pytest.fixture
def machine(monkeypatch):
    """Make discovery return `devs`, with no default chosen and no CLNET_DEVICE (all restored afterwards)."""
    def install(devs, env=None):
        monkeypatch.setattr(D, "all_devices", lambda refresh=False: list(devs))
        monkeypatch.setattr(D, "_DEFAULT", None)
        if env is None:
            monkeypatch.delenv("CLNET_DEVICE", raising=False)
        else:
            monkeypatch.setenv("CLNET_DEVICE", env)
    return install


# --- devices: printing ------------------------------------------------------------------------------
def test_devices_print_as_pytorch_and_the_string_selects_them_again(machine):
    machine(GPU_MACHINE)
    names = {dev: str(dev) for dev in GPU_MACHINE}
    assert names == {POCL: "cpu", POCL_WHEEL: "cpu:1", LLVMPIPE: "cpu:2", BIG: "gpu:0", SMALL: "gpu:1",
                     IGPU: "gpu:2", OCLGRIND: "oclgrind"}
    for dev, name in names.items():
        assert torch.device(name) is dev, name
    assert torch.device("cpu").index is None and BIG.index == 0 and SMALL.index == 1 and POCL_WHEEL.index == 1
    assert BIG.type == "gpu" and POCL.type == "cpu"
    assert BIG.describe() == "opencl:5:0 NVIDIA H200 [NVIDIA CUDA]"  # the OpenCL identity, on request


def test_cpu_names_the_chosen_cpu_device(machine):
    machine(CPU_MACHINE, env="rusticl")
    assert torch.device("cpu") is LLVMPIPE and str(LLVMPIPE) == "cpu"
    assert str(POCL) == "cpu:0" and torch.device("cpu:0") is POCL  # still reachable by index


# --- devices: "cuda", torch.cuda, torch.accelerator, torch.backends.mps ----------------------------
def test_cuda_is_the_best_gpu_on_a_gpu_machine(machine):
    machine(GPU_MACHINE)
    assert torch.cuda.is_available() and torch.accelerator.is_available() and torch.backends.mps.is_available()
    assert torch.cuda.device_count() == 3 and torch.accelerator.device_count() == 3
    assert torch.device("cuda") is BIG and torch.device("cuda:1") is SMALL and torch.device("cuda", 2) is IGPU
    assert torch.device(1) is SMALL  # an int is an accelerator ordinal, as torch.device(1) is cuda:1
    assert torch.device("mps") is BIG and torch.device("xpu") is BIG
    assert torch.cuda.get_device_name() == "NVIDIA H200" and torch.cuda.get_device_name(1) == "NVIDIA GeForce GTX 1650"
    assert torch.cuda.get_device_properties(0).total_memory == 140 << 30
    acc = torch.accelerator.current_accelerator()
    assert acc is BIG and torch.device(acc.type) is BIG  # the tutorials' `current_accelerator().type` idiom
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert device is BIG


def test_no_accelerator_on_a_cpu_machine(machine):
    machine(CPU_MACHINE)
    assert not torch.cuda.is_available() and not torch.accelerator.is_available()
    assert not torch.backends.mps.is_available()
    assert torch.cuda.device_count() == 0 and torch.accelerator.current_accelerator() is None
    assert torch.device("cuda" if torch.cuda.is_available() else "cpu") is POCL
    with pytest.raises(DeviceNotFoundError, match="no GPU or accelerator OpenCL device.*use 'cpu'"):
        torch.device("cuda")
    with pytest.raises(DeviceNotFoundError, match="no GPU"):
        torch.cuda.get_device_name()


def test_a_cpu_default_hides_the_accelerator(machine):
    """CLNET_DEVICE=pocl runs an unchanged program on PoCL even where it asks for cuda when available."""
    machine(GPU_MACHINE, env="pocl")
    assert not torch.cuda.is_available() and torch.cuda.device_count() == 0
    assert torch.device("cuda" if torch.cuda.is_available() else "cpu") is POCL
    with pytest.raises(DeviceNotFoundError, match="CLNET_DEVICE=gpu"):
        torch.device("cuda")
    assert torch.device("gpu") is BIG  # clnet's own words still reach every device
    assert clnet.set_default_device("cuda") is BIG  # as torch.set_default_device("cuda")
    assert torch.cuda.is_available()


def test_a_gpu_default_is_the_current_accelerator(machine):
    machine(GPU_MACHINE)
    clnet.set_default_device(IGPU)
    assert D.accelerators() == [BIG, SMALL, IGPU]  # 'cuda:N' counts by rank, whatever the default
    assert torch.device("cuda") is IGPU and torch.device("gpu") is IGPU and torch.device("cuda:0") is BIG
    assert torch.cuda.current_device() == 2 and torch.accelerator.current_device_index() == 2
    assert torch.accelerator.current_accelerator() is IGPU and str(IGPU) == "gpu:2"
    torch.cuda.set_device(1)
    assert clnet.default_device() is SMALL and torch.device("cuda") is SMALL
    with torch.cuda.device(0):
        assert clnet.default_device() is BIG
    assert clnet.default_device() is SMALL


def test_a_simulator_default_is_the_accelerator(machine):
    machine(CPU_MACHINE, env="oclgrind")
    assert torch.cuda.is_available() and torch.device("cuda") is OCLGRIND and str(OCLGRIND) == "oclgrind"


def test_device_is_a_type_for_isinstance(machine):
    machine(CPU_MACHINE)
    dev = torch.device("cpu")
    assert isinstance(dev, torch.device) and isinstance(dev, clnet.Device)
    assert not isinstance("cpu", torch.device)
    assert torch.device(dev) is dev


@pytest.mark.parametrize("bad, error, match", [
    (("cuda:0", 1), ValueError, "either in the string"), (("cuda", -1), ValueError, "non-negative"),
    ((2.5,), TypeError, "device must be"), (("tpu",), DeviceNotFoundError, "'tpu'"),
])
def test_device_bad_arguments(machine, bad, error, match):
    machine(GPU_MACHINE)
    with pytest.raises(error, match=match):
        torch.device(*bad)


def test_cuda_manual_seed_is_ignored_without_an_accelerator(machine, device):
    torch.manual_seed(3)
    a = torch.rand(5).numpy()
    torch.manual_seed(3)
    machine(CPU_MACHINE)
    torch.cuda.manual_seed(99)  # no accelerator: ignored, as PyTorch ignores it without CUDA
    torch.cuda.manual_seed_all(99)
    D._DEFAULT = device
    np.testing.assert_array_equal(torch.rand(5).numpy(), a)


def test_cuda_manual_seed_seeds_with_an_accelerator(machine, device):
    torch.manual_seed(4)
    a = torch.rand(5).numpy()
    machine(GPU_MACHINE)
    torch.cuda.manual_seed(4)
    D._DEFAULT = device
    np.testing.assert_array_equal(torch.rand(5).numpy(), a)


def test_backend_flags_are_accepted():
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = True
    import clnet.backends.cudnn as cudnn  # the imagenet example's spelling
    assert cudnn.benchmark and not cudnn.is_available()


def test_real_devices_print_as_pytorch(device):
    """On the devices under test: a tensor's device prints as PyTorch's and selects that device again."""
    x = torch.ones(2, device=device)
    name = str(x.device)
    assert torch.device(name) is device
    assert name == "cpu" or name.startswith(("cpu:", "gpu:", "accelerator:", "oclgrind"))
    assert device.name in device.describe() and device.spec in device.describe()
    place = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    y = torch.zeros(2, device=place)  # the idiom works on every machine, without an error
    assert y.device is place


# --- dtypes -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("alias, expected", [
    ("float", np.float32), ("double", np.float64), ("half", np.float16), ("long", np.int64), ("int", np.int32),
    ("short", np.int16), ("bool", np.bool_), ("uint8", np.uint8), ("int8", np.int8), ("float32", np.float32),
    ("float64", np.float64), ("float16", np.float16), ("int64", np.int64), ("int32", np.int32),
    ("int16", np.int16)])
def test_dtype_aliases(alias, expected):
    dt = getattr(torch, alias)
    assert dt == np.dtype(expected) and isinstance(dt, torch.dtype)


@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_small_integer_tensors(device, dtype):
    """int8/int16 tensors compute as PyTorch's: wrap-around in their own width, sums in int64."""
    a = np.array([[100, -7, 3], [120, 5, -128 if dtype == np.int8 else -30000]], dtype=dtype)
    x = clnet.tensor(a, device=device)
    assert x.dtype == np.dtype(dtype) and clnet.from_numpy(a).dtype == np.dtype(dtype)
    np.testing.assert_array_equal((x + x).numpy(), (a + a).astype(dtype))  # wraps, as int8 + int8 does
    np.testing.assert_array_equal(x.sum(1).numpy(), a.astype(np.int64).sum(1))
    assert x.sum().dtype == clnet.int64
    np.testing.assert_array_equal(x.max(1).values.numpy(), a.max(1))
    np.testing.assert_array_equal(x.argmin(1).numpy(), a.argmin(1))
    np.testing.assert_array_equal(clnet.sort(x, 1).values.numpy(), np.sort(a, 1))
    np.testing.assert_array_equal((x * 0.5).numpy(), a * np.float32(0.5))
    assert (x + clnet.tensor([1], dtype=clnet.int32, device=device)).dtype == clnet.int32
    assert clnet.ShortTensor([1, 2]).dtype == clnet.int16 and clnet.CharTensor([1]).dtype == clnet.int8


def test_float_is_float32_not_float16():
    assert torch.float is torch.float32  # Python's float is 64-bit; torch.float is not
    assert torch.finfo(torch.float).eps == np.finfo(np.float32).eps
    assert torch.iinfo(torch.long).max == 2**63 - 1


@pytest.mark.parametrize("name, says", [("bfloat16", "clnet.float32"), ("complex64", "no complex"),
                                        ("cfloat", "no complex"), ("uint32", "clnet.int64")])
def test_missing_torch_dtypes_say_what_to_use(name, says):
    with pytest.raises(AttributeError, match=says):
        getattr(torch, name)


@pytest.mark.parametrize("name, says", [("flot", r"did you mean clnet\.float \(float32\)"),
                                        ("FloatTensr", r"did you mean clnet\.FloatTensor"),
                                        ("no_gard", r"did you mean clnet\.no_grad")])
def test_misspelt_names_suggest_the_right_one(name, says):
    with pytest.raises(AttributeError, match=says):
        getattr(torch, name)
    with pytest.raises(AttributeError, match=r"no attribute 'xyzzy'$"):
        torch.xyzzy


def test_default_dtype(device):
    assert torch.get_default_dtype() == torch.float32
    if not device.fp64:
        pytest.skip(f"{device.name} has no float64")
    torch.set_default_dtype(torch.float64)
    try:
        assert torch.tensor([1.5]).dtype == torch.float64 and torch.zeros(2).dtype == torch.float64
        assert torch.tensor([1]).dtype == torch.int64
    finally:
        torch.set_default_dtype(torch.float32)
    assert torch.tensor([1.5]).dtype == torch.float32
    with pytest.raises(TypeError, match="floating-point"):
        torch.set_default_dtype(torch.int32)


# --- Size ---------------------------------------------------------------------------------------------
def test_size_prints_compares_and_slices_as_torch_size():
    s = torch.Size([2, 3, 4])
    assert repr(s) == str(s) == "torch.Size([2, 3, 4])" and str(torch.Size()) == "torch.Size([])"
    assert s == (2, 3, 4) and (2, 3, 4) == s and isinstance(s, tuple)
    assert s.numel() == 24 and torch.Size([]).numel() == 1
    assert s[1:] == (3, 4) and s[-1] == 4 and type(s[0]) is int  # slices are plain tuples (docs/pytorch.md)
    assert isinstance(s + (5,), torch.Size) and s + (5,) == (2, 3, 4, 5) and (1,) + s == (1, 2, 3, 4)
    assert torch.Size(np.array([2, 3])) == (2, 3) and hash(s) == hash((2, 3, 4))
    a, b, c = s
    assert (a, b, c) == (2, 3, 4)
    with pytest.raises(TypeError, match="iterable of ints"):
        torch.Size([2.5])


def test_shapes_are_sizes(device):
    x = torch.zeros(2, 3)
    assert isinstance(x.shape, torch.Size) and isinstance(x.size(), torch.Size)
    assert str(x.shape) == "torch.Size([2, 3])" and x.size() == (2, 3) and x.size(1) == 3
    for y in (x.t(), x[0], x.reshape(6), x + 1, x.sum(0), x.unsqueeze(0), x.detach()):
        assert isinstance(y.shape, torch.Size), y
