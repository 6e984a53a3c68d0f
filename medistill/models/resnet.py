"""ResNet-18 for small images (cross-architecture evaluation), as in the DC/MTT codebases.

3×3 stem (stride 1, no max-pool), four stages of two BasicBlocks (64, 128, 256, 512), global
average pooling, Linear(512, K). Normalisation: instance norm (GroupNorm per channel) by default,
batch norm optionally.
"""
from __future__ import annotations

import torch
from torch import nn

from .convnet import make_norm


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.norm1 = make_norm(norm, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.norm2 = make_norm(norm, out_ch)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), make_norm(norm, out_ch))

    def forward(self, x):
        out = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """x: (B, C, H, W) → logits (B, K); ``embed(x)`` → (B, 512)."""

    def __init__(self, channels: int, num_classes: int, norm: str = "instancenorm"):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, 64, 3, 1, 1, bias=False), make_norm(norm, 64), nn.ReLU())
        blocks, in_ch = [], 64
        for out_ch, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            blocks += [BasicBlock(in_ch, out_ch, stride, norm), BasicBlock(out_ch, out_ch, 1, norm)]
            in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = 512
        self.classifier = nn.Linear(512, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
