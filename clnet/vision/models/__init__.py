"""clnet.vision.models: torchvision's classification models with torchvision's state_dict keys, so weights
saved from torchvision (torch.save(model.state_dict(), f), or its downloaded .pth files) load with
model.load_state_dict(clnet.load(f)) and give torchvision's outputs.

    from clnet.vision import models
    model = models.resnet18(weights="resnet18-f37072fd.pth").eval()
"""
from ._weights import Weights, hub_dir  # noqa: F401
from .alexnet import AlexNet, AlexNet_Weights, alexnet
from .mobilenetv2 import MobileNet_V2_Weights, MobileNetV2, mobilenet_v2
from .resnet import (ResNet, ResNet18_Weights, ResNet34_Weights, ResNet50_Weights, ResNet101_Weights,
                     ResNet152_Weights, ResNeXt50_32X4D_Weights, Wide_ResNet50_2_Weights, resnet18, resnet34, resnet50,
                     resnet101, resnet152, resnext50_32x4d, wide_resnet50_2)
from .vgg import (VGG, VGG11_BN_Weights, VGG11_Weights, VGG13_BN_Weights, VGG13_Weights, VGG16_BN_Weights,
                  VGG16_Weights, VGG19_BN_Weights, VGG19_Weights, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn,
                  vgg19, vgg19_bn)

__all__ = ["alexnet", "AlexNet", "mobilenet_v2", "MobileNetV2", "resnet18", "resnet34", "resnet50", "resnet101",
           "resnet152", "resnext50_32x4d", "wide_resnet50_2", "ResNet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn",
           "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "VGG", "AlexNet_Weights", "MobileNet_V2_Weights",
           "ResNet18_Weights", "ResNet34_Weights", "ResNet50_Weights", "ResNet101_Weights", "ResNet152_Weights",
           "ResNeXt50_32X4D_Weights", "Wide_ResNet50_2_Weights", "VGG11_Weights", "VGG11_BN_Weights",
           "VGG13_Weights", "VGG13_BN_Weights", "VGG16_Weights", "VGG16_BN_Weights", "VGG19_Weights",
           "VGG19_BN_Weights"]
