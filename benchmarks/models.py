"""Models the step benchmarks train, written once against the PyTorch API so that the very same code builds
the clnet model (pass clnet.nn) and the PyTorch one (pass torch.nn): only the import differs.

    resnet18_cifar(nn, F)   ResNet-18 for 32x32 images (3x3 stem, no max-pool; BasicBlocks 2-2-2-2 of
                            64-128-256-512 channels; 1x1 convolution + BatchNorm shortcuts where the shape
                            changes; 4x4 average pool; linear to 10 classes), the CIFAR variant of
                            He et al. (2016) as the common CIFAR-10 training scripts write it
"""
from __future__ import annotations


def resnet18_cifar(nn, F, num_classes=10):
    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(self, in_planes, planes, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.shortcut = nn.Sequential()
            if stride != 1 or in_planes != planes:
                self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                              nn.BatchNorm2d(planes))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            out = out + self.shortcut(x)
            return F.relu(out)

    class ResNet(nn.Module):
        def __init__(self, num_blocks=(2, 2, 2, 2)):
            super().__init__()
            self.in_planes = 64
            self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.layer1 = self._make_layer(64, num_blocks[0], 1)
            self.layer2 = self._make_layer(128, num_blocks[1], 2)
            self.layer3 = self._make_layer(256, num_blocks[2], 2)
            self.layer4 = self._make_layer(512, num_blocks[3], 2)
            self.linear = nn.Linear(512, num_classes)

        def _make_layer(self, planes, n, stride):
            layers = []
            for s in [stride] + [1] * (n - 1):
                layers.append(BasicBlock(self.in_planes, planes, s))
                self.in_planes = planes
            return nn.Sequential(*layers)

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
            out = F.avg_pool2d(out, 4)
            out = out.reshape(out.shape[0], -1)
            return self.linear(out)

    return ResNet()
