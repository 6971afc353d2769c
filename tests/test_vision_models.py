"""clnet.vision.models against torchvision's layout: a torchvision-format ResNet-18 (and a MobileNetV2,
whose depthwise convolutions are grouped) written here in PyTorch by hand, with torchvision's module names
(torchvision itself does not install beside torch 2.13 here), saved with torch.save, loaded into clnet's
model and compared on the same input; VGG-16 and AlexNet keys and shapes against the same kind of mirror
built on PyTorch's meta device (no memory)."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
from clnet.vision import models
from conftest import assert_close, small

torch = pytest.importorskip("torch")
tnn = torch.nn


# --- torchvision's structures, written out in PyTorch (same module names, so the same state_dict keys) ---------
class TBasicBlock(tnn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.relu = tnn.ReLU(inplace=True)
        self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = tnn.Sequential(tnn.Conv2d(inplanes, planes, 1, stride, bias=False), tnn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class TResNet18(tnn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(64)
        self.relu = tnn.ReLU(inplace=True)
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        chans, inplanes = [64, 128, 256, 512], 64
        for i, planes in enumerate(chans):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", tnn.Sequential(TBasicBlock(inplanes, planes, stride),
                                                          TBasicBlock(planes, planes)))
            inplanes = planes
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _cna(cin, cout, k=3, stride=1, groups=1):
    return tnn.Sequential(tnn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                          tnn.BatchNorm2d(cout), tnn.ReLU6(inplace=True))


class TInvertedResidual(tnn.Module):
    def __init__(self, inp, oup, stride, t):
        super().__init__()
        hidden = int(round(inp * t))
        self.use_res_connect = stride == 1 and inp == oup
        layers = [_cna(inp, hidden, 1)] if t != 1 else []
        layers += [_cna(hidden, hidden, 3, stride, hidden), tnn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
                   tnn.BatchNorm2d(oup)]
        self.conv = tnn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TMobileNetV2(tnn.Module):
    def __init__(self, num_classes, width_mult):
        super().__init__()
        div = models._weights.make_divisible
        cin, last = div(32 * width_mult, 8), div(1280 * max(1.0, width_mult), 8)
        feats = [_cna(3, cin, 3, 2)]
        for t, c, n, s in [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1],
                           [6, 160, 3, 2], [6, 320, 1, 1]]:
            cout = div(c * width_mult, 8)
            for i in range(n):
                feats.append(TInvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        feats.append(_cna(cin, last, 1))
        self.features = tnn.Sequential(*feats)
        self.classifier = tnn.Sequential(tnn.Dropout(0.2), tnn.Linear(last, num_classes))

    def forward(self, x):
        x = tnn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def _randomize_bn(model):
    """Non-trivial running statistics and affine parameters (a fresh BatchNorm is the identity)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, tnn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_torchvision_format_weights_load_and_match(device, tmp_path, arch):
    torch.manual_seed(0)
    if arch == "resnet18":
        tm, kwargs, size = TResNet18(num_classes=10), dict(num_classes=10), small(device, 64, 32)
    else:
        tm, kwargs, size = TMobileNetV2(10, 0.35), dict(num_classes=10, width_mult=0.35), 32
    _randomize_bn(tm)
    tm.eval()
    path = tmp_path / f"{arch}.pth"
    torch.save(tm.state_dict(), path)
    cm = getattr(models, arch)(weights=str(path), **kwargs).eval()
    assert list(cm.state_dict().keys()) == list(tm.state_dict().keys())
    x = np.random.default_rng(1).standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        want = tm(torch.tensor(x)).numpy()
    assert_close(cm(clnet.tensor(x)), want, rtol=1e-3, atol=1e-4)


def _meta_vgg16():
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers, cin = [], 3
    for v in cfg:
        if v == "M":
            layers.append(tnn.MaxPool2d(2, 2))
        else:
            layers += [tnn.Conv2d(cin, v, 3, padding=1), tnn.ReLU(True)]
            cin = v
    m = tnn.Module()
    m.features = tnn.Sequential(*layers)
    m.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
    m.classifier = tnn.Sequential(tnn.Linear(25088, 4096), tnn.ReLU(True), tnn.Dropout(), tnn.Linear(4096, 4096),
                                  tnn.ReLU(True), tnn.Dropout(), tnn.Linear(4096, 1000))
    return m


def _meta_alexnet():
    m = tnn.Module()
    m.features = tnn.Sequential(tnn.Conv2d(3, 64, 11, 4, 2), tnn.ReLU(True), tnn.MaxPool2d(3, 2),
                                tnn.Conv2d(64, 192, 5, padding=2), tnn.ReLU(True), tnn.MaxPool2d(3, 2),
                                tnn.Conv2d(192, 384, 3, padding=1), tnn.ReLU(True), tnn.Conv2d(384, 256, 3, padding=1),
                                tnn.ReLU(True), tnn.Conv2d(256, 256, 3, padding=1), tnn.ReLU(True), tnn.MaxPool2d(3, 2))
    m.avgpool = tnn.AdaptiveAvgPool2d((6, 6))
    m.classifier = tnn.Sequential(tnn.Dropout(), tnn.Linear(9216, 4096), tnn.ReLU(True), tnn.Dropout(),
                                  tnn.Linear(4096, 4096), tnn.ReLU(True), tnn.Linear(4096, 1000))
    return m


@pytest.mark.big(reason="vgg16 holds 138M parameters (and alexnet 61M): allocating them is not the simulator's job")
@pytest.mark.parametrize("arch", ["vgg16", "alexnet", "resnet50"])
def test_state_dict_layout_matches_torchvision(device, arch):
    with torch.device("meta"):
        if arch == "vgg16":
            tm = _meta_vgg16()
        elif arch == "alexnet":
            tm = _meta_alexnet()
        else:
            tm = None
    cm = getattr(models, arch)()
    got = {k: tuple(v.shape) for k, v in cm.state_dict().items()}
    if tm is not None:
        assert got == {k: tuple(v.shape) for k, v in tm.state_dict().items()}
    else:  # ResNet-50: torchvision's bottleneck layout (stride on the 3x3 conv, 4x expansion)
        assert len(got) == 320 and got["layer2.0.conv2.weight"] == (128, 128, 3, 3)
        assert got["layer4.2.conv3.weight"] == (2048, 512, 1, 1) and got["fc.weight"] == (1000, 2048)
        assert got["layer3.0.downsample.0.weight"] == (1024, 512, 1, 1)


@pytest.mark.slow  # three ResNet-18s: minutes on llvmpipe
def test_weights_arguments(device, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not download"):
        models.resnet18(weights=models.ResNet18_Weights.DEFAULT)
    with pytest.raises(FileNotFoundError, match="resnet18-f37072fd.pth"):
        models.resnet18(weights="IMAGENET1K_V1")
    tm = TResNet18()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(tm.state_dict(), tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    cm = models.resnet18(weights=models.ResNet18_Weights.IMAGENET1K_V1)
    assert_close(cm.fc.weight, tm.fc.weight.detach().numpy())
    with pytest.raises(TypeError, match="weights must be"):
        models.resnet18(weights=3)
