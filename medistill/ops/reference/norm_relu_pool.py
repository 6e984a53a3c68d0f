"""Reference of ``norm_relu_pool``: one ConvNet block after its convolution."""
import torch
import torch.nn.functional as F


def norm_relu_pool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """avg_pool2d(relu(group_norm(x, C, weight, bias, eps)), 2): x (B, C, H, W), weight/bias (C,) → (B, C, H//2, W//2).

    Instance norm (one group per channel, biased variance), then ReLU, then a 2×2 average pool in
    floor mode (an odd last row/column is dropped).
    """
    return F.avg_pool2d(F.relu(F.group_norm(x, x.shape[1], weight, bias, eps)), 2)
