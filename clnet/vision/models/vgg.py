"""VGG (Simonyan & Zisserman, 2014), torchvision's layout and state_dict keys: vgg11/13/16/19 and their
batch-norm variants (features.N, classifier.0/3/6)."""
from __future__ import annotations

from ... import nn
from ...ops import movement as _mv
from ._weights import Weights, check_pretrained, load_weights, weights_file

CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, features, num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes))
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(_mv.flatten(x, 1))


def make_layers(cfg, batch_norm: bool = False) -> nn.Sequential:
    layers, in_channels = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            in_channels = v
    return nn.Sequential(*layers)


_HUB = "https://download.pytorch.org/models/"


class VGG11_Weights(Weights):
    IMAGENET1K_V1 = (_HUB + "vgg11-8a719046.pth", 1000)
    DEFAULT = IMAGENET1K_V1


class VGG11_BN_Weights(Weights):
    IMAGENET1K_V1 = (_HUB + "vgg11_bn-6002323d.pth", 1000)
    DEFAULT = IMAGENET1K_V1


class VGG13_Weights(Weights):
    IMAGENET1K_V1 = (_HUB + "vgg13-19584684.pth", 1000)
    DEFAULT = IMAGENET1K_V1


class VGG13_BN_Weights(Weights):
    IMAGENET1K_V1 = (_HUB + "vgg13_bn-abd245e5.pth", 1000)
    DEFAULT = IMAGENET1K_V1


class VGG16_Weights(Weights):
    IMAGENET1K_V1 = (_HUB + "vgg16-397923af.pth", 1000)
    DEFAULT = IMAGENET1K_V1


class VGG16_BN_Weights(Weights):
    IMAGENET1K_V1 = (_HUB + "vgg16_bn-6c64b313.pth", 1000)
    DEFAULT = IMAGENET1K_V1


class VGG19_Weights(Weights):
    IMAGENET1K_V1 = (_HUB + "vgg19-dcbb9e9d.pth", 1000)
    DEFAULT = IMAGENET1K_V1


class VGG19_BN_Weights(Weights):
    IMAGENET1K_V1 = (_HUB + "vgg19_bn-c79401a0.pth", 1000)
    DEFAULT = IMAGENET1K_V1


def _vgg(cfg, batch_norm, weights_cls, weights, progress, **kwargs):
    weights = weights_cls.verify(check_pretrained(kwargs, weights))
    if weights is not None:
        kwargs["init_weights"] = False
        if isinstance(weights, Weights):
            kwargs.setdefault("num_classes", weights.meta["num_classes"])
    path = weights_file(weights)
    return load_weights(VGG(make_layers(CFGS[cfg], batch_norm), **kwargs), path, progress)


def vgg11(*, weights=None, progress=True, **kwargs) -> VGG:
    return _vgg("A", False, VGG11_Weights, weights, progress, **kwargs)


def vgg11_bn(*, weights=None, progress=True, **kwargs) -> VGG:
    return _vgg("A", True, VGG11_BN_Weights, weights, progress, **kwargs)


def vgg13(*, weights=None, progress=True, **kwargs) -> VGG:
    return _vgg("B", False, VGG13_Weights, weights, progress, **kwargs)


def vgg13_bn(*, weights=None, progress=True, **kwargs) -> VGG:
    return _vgg("B", True, VGG13_BN_Weights, weights, progress, **kwargs)


def vgg16(*, weights=None, progress=True, **kwargs) -> VGG:
    """VGG-16 (configuration D); weights: None, a VGG16_Weights value (file in torch hub's cache) or a path."""
    return _vgg("D", False, VGG16_Weights, weights, progress, **kwargs)


def vgg16_bn(*, weights=None, progress=True, **kwargs) -> VGG:
    return _vgg("D", True, VGG16_BN_Weights, weights, progress, **kwargs)


def vgg19(*, weights=None, progress=True, **kwargs) -> VGG:
    return _vgg("E", False, VGG19_Weights, weights, progress, **kwargs)


def vgg19_bn(*, weights=None, progress=True, **kwargs) -> VGG:
    return _vgg("E", True, VGG19_BN_Weights, weights, progress, **kwargs)
