"""AlexNet (Krizhevsky et al., 2012; the "one weird trick" variant torchvision ships), its state_dict keys."""
from __future__ import annotations

from ... import nn
from ...ops import movement as _mv
from ._weights import Weights, check_pretrained, load_weights, weights_file


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(_mv.flatten(x, 1))


class AlexNet_Weights(Weights):
    IMAGENET1K_V1 = ("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", 1000)
    DEFAULT = IMAGENET1K_V1


def alexnet(*, weights=None, progress: bool = True, **kwargs) -> AlexNet:
    """AlexNet; weights: None, an AlexNet_Weights value (file in torch hub's cache) or a path."""
    weights = AlexNet_Weights.verify(check_pretrained(kwargs, weights))
    if isinstance(weights, Weights):
        kwargs.setdefault("num_classes", weights.meta["num_classes"])
    path = weights_file(weights)
    return load_weights(AlexNet(**kwargs), path, progress)
