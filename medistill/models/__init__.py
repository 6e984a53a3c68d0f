"""Networks for distillation and evaluation: ConvNet (default; its depth follows the image size, see
:func:`~.convnet.default_depth`) and ResNet-18."""
from __future__ import annotations

import torch
from torch import nn

from .convnet import ConvNet, default_depth
from .init import reset_parameters
from .resnet import ResNet18

MODEL_NAMES = ("convnet", "convnet_d2", "convnet_d4", "convnet_w64", "convnet_bn", "resnet18")


def build_model(name: str, channels: int, num_classes: int, image_size: int = 28,
                generator: torch.Generator | None = None) -> nn.Module:
    """A fresh network by name; seeded from ``generator`` when given (global RNG untouched)."""
    key = name.lower()
    if key == "convnet":
        model = ConvNet(channels, num_classes, image_size)
    elif key == "convnet_d2":
        model = ConvNet(channels, num_classes, image_size, depth=2)
    elif key == "convnet_d4":
        model = ConvNet(channels, num_classes, image_size, depth=4)
    elif key == "convnet_w64":
        model = ConvNet(channels, num_classes, image_size, width=64)
    elif key == "convnet_bn":
        model = ConvNet(channels, num_classes, image_size, norm="batchnorm")
    elif key == "resnet18":
        model = ResNet18(channels, num_classes)
    else:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    if generator is not None:
        reset_parameters(model, generator)
    return model


__all__ = ["ConvNet", "ResNet18", "MODEL_NAMES", "build_model", "default_depth", "reset_parameters"]
