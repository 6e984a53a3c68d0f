"""ConvNet, the default network for distilling and evaluating (docs/methods.md, "Common ground").

depth × [Conv3×3 → norm → ReLU → AvgPool2d(2)] → flatten → Linear(features, K). At 28 px the first
convolution pads by 3 (28+6-2 = 32) for any channel count, so a 28 px input gives the same
128×4×4 = 2048 features as a 32 px one; the published code does this for 1 channel only.

Depth follows the image size (:func:`default_depth`) unless given: 3 blocks up to 63 px (28 and 32 px:
4×4 maps), then one more block for each doubling, as the published code's deeper variants (ConvNetD4
for 64 px, D5 for 128 px, D6 for 256 px): 64–127 px → 4, 128–255 px → 5, 256–511 px → 6. The last
feature map is 4×4 at 32/64/128 px (2048 features) and 7×7 at 224 px (6272 features).

Fused blocks (``fused_blocks=True``, the default): a block Conv → GroupNorm(C, C) → ReLU →
:class:`AvgPool2x2` runs as conv → :func:`medistill.ops.norm_relu_pool` (one kernel that reads the
conv output once and writes the pooled quarter) whenever the compiled op serves the input's device
and dtype; otherwise, and for any other block, the modules run one by one. The modules stay in
``features`` either way, so parameter names, state_dicts and ``functional_call`` are unchanged.
Replacing a block's pool or norm module (as ``benchmarks/published_loops.as_published`` does with
``nn.AvgPool2d``) turns fusion off for that block.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import has_cuda_kernels, has_ops, norm_relu_pool


def default_depth(image_size: int) -> int:
    """Blocks of the ConvNet for ``image_size`` px: 3 below 64 px, then one per doubling (64 → 4, 128 → 5,
    224 → 5, 256 → 6): each block halves the map, which ends between 4×4 and 7×7 from 32 px on."""
    depth = 3
    while image_size >= 2 ** (depth + 3):
        depth += 1
    return depth


def make_norm(kind: str, channels: int) -> nn.Module:
    """'instancenorm' (GroupNorm with one group per channel, affine: the published default), 'batchnorm', 'none'."""
    if kind == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose instancenorm, batchnorm or none")


class AvgPool2x2(nn.Module):
    """``nn.AvgPool2d(2)`` as two strided adds: (B, C, H, W) → (B, C, H // 2, W // 2).

    Same result up to float rounding (the four terms are summed pairwise, rows then columns; an odd
    last row/column is dropped, as AvgPool2d's floor mode does). On CPU it is ~2.5× faster forward
    and ~1.8× forward+backward than ATen's NCHW avg_pool2d for a (256, 128, 32, 32) activation
    (one thread, dev VM), where ATen's kernel is the slowest step of ConvNet-3. On a GPU it
    calls ``F.avg_pool2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":  # one ATen kernel beats three elementwise launches on a GPU
            return F.avg_pool2d(x, 2)
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        rows = x[..., 0:h:2, :w] + x[..., 1:h:2, :w]
        return (rows[..., 0::2] + rows[..., 1::2]) * 0.25


def make_pool(kind: str) -> nn.Module:
    if kind == "avgpooling":
        return AvgPool2x2()
    if kind == "maxpooling":
        return nn.MaxPool2d(2)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown pooling {kind!r}; choose avgpooling, maxpooling or none")


def _fusable(block: list[nn.Module]) -> bool:
    """Whether four consecutive modules are Conv2d → GroupNorm(C, C, affine) → ReLU → AvgPool2x2."""
    if len(block) != 4:
        return False
    conv, norm, relu, pool = block
    return (isinstance(conv, nn.Conv2d) and type(norm) is nn.GroupNorm and norm.affine
            and norm.num_groups == norm.num_channels and isinstance(relu, nn.ReLU) and type(pool) is AvgPool2x2)


def _fused_op_serves(x: torch.Tensor) -> bool:
    """Whether the compiled norm_relu_pool runs for x (else the unfused modules are faster). Checked
    on each block's conv output: under autocast that is bfloat16/half even for float32 input."""
    if not has_ops():
        return False
    if x.device.type == "cpu":
        return x.dtype in (torch.float32, torch.float64)
    return x.device.type == "cuda" and has_cuda_kernels()


class ConvNet(nn.Module):
    """x: (B, C, H, W) → logits (B, K); ``embed(x)`` → (B, feature_dim). ``depth=None``: :func:`default_depth`
    of ``image_size``.

    ``fused_blocks``: run instance-norm/ReLU/avg-pool blocks through the fused op (see the module
    doc); an attribute, so it can be switched on a built network.
    """

    def __init__(self, channels: int, num_classes: int, image_size: int = 28, width: int = 128, depth: int | None = None,
                 norm: str = "instancenorm", pooling: str = "avgpooling", fused_blocks: bool = True):
        super().__init__()
        self.fused_blocks = fused_blocks
        depth = default_depth(image_size) if depth is None else depth
        self.depth = depth
        if channels < 1 or num_classes < 1 or depth < 1 or width < 1:
            raise ValueError("ConvNet needs channels, num_classes, width and depth ≥ 1")
        layers: list[nn.Module] = []
        size = image_size
        in_ch = channels
        for d in range(depth):
            pad = 3 if (d == 0 and image_size == 28) else 1
            layers += [nn.Conv2d(in_ch, width, 3, padding=pad), make_norm(norm, width), nn.ReLU(inplace=True)]
            size = size + 2 * pad - 2
            if pooling != "none":
                layers.append(make_pool(pooling))
                size //= 2
            in_ch = width
        if size < 1:
            raise ValueError(f"image_size {image_size} is too small for depth {depth}")
        self.features = nn.Sequential(*layers)
        self.feature_dim = width * size * size
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, feature_dim) flattened features."""
        if self.fused_blocks and has_ops():
            return self._fused_features(x).flatten(1)
        return self.features(x).flatten(1)

    def _fused_features(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self.features)
        i = 0
        while i < len(layers):
            if _fusable(layers[i : i + 4]):
                conv, norm = layers[i], layers[i + 1]
                x = conv(x)
                if _fused_op_serves(x):
                    x = norm_relu_pool(x, norm.weight, norm.bias, norm.eps)
                else:
                    for module in layers[i + 1 : i + 4]:
                        x = module(x)
                i += 4
            else:
                x = layers[i](x)
                i += 1
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
