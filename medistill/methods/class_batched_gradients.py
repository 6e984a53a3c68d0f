"""Every class's parameter gradient from one vmapped network pass (``torch.func``), for DC and DSA.

DC needs, per class k, the gradient of the mean cross-entropy of the network on class k's batch
with respect to every parameter. The class loop does K forward and K backward passes, each a few
hundred small ops; on a GPU that is host-bound (launch and autograd overhead, not arithmetic).
Here ``vmap(grad(loss))`` over a class axis runs the K batches as one pass of K-times-larger ops.

It is exact only when a sample's output does not depend on the other samples of its batch (instance
norm or no norm; not batch norm), so :func:`supports_class_batching` checks the network. Classes
with fewer images than the others are zero-padded and the padding gets weight 0 in the loss, so
each class's gradient is still the mean over its own images.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ..models.convnet import ConvNet


def supports_class_batching(net: nn.Module) -> bool:
    """Whether per-class gradients of ``net`` can be batched: a ConvNet without batch norm."""
    return isinstance(net, ConvNet) and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


@contextlib.contextmanager
def _unfused(net: ConvNet):
    """Run the ConvNet's blocks module by module (the fused op has no vmap rule)."""
    saved = net.fused_blocks
    net.fused_blocks = False
    try:
        yield
    finally:
        net.fused_blocks = saved


def _stack_padded(batches: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """K batches (n_k, C, H, W) → x (K, n_max, C, H, W) zero-padded, weights (K, n_max) = 1/n_k or 0."""
    n_max = max(len(b) for b in batches)
    rows = []
    weights = torch.zeros(len(batches), n_max)  # built on the host, one non-blocking copy
    for k, b in enumerate(batches):
        if len(b) == 0:
            raise ValueError("class-batched gradients: a class batch is empty")
        pad = n_max - len(b)
        rows.append(torch.cat([b, b.new_zeros((pad,) + tuple(b.shape[1:]))]) if pad else b)
        weights[k, : len(b)] = 1.0 / len(b)
    return torch.stack(rows), weights.to(rows[0].device, non_blocking=True)


def class_gradients(net: nn.Module, batches: Sequence[torch.Tensor], classes: Sequence[int],
                    precision: Callable[[], contextlib.AbstractContextManager]) -> list[torch.Tensor]:
    """Per class k, ∇_θ mean_i CE(net(batches[k])_i, classes[k]), stacked: a list over
    ``net.parameters()`` of (K, *p.shape) tensors.

    batches: K tensors (n_k, C, H, W); autograd flows from the result back to them (call it with
    ``create_graph`` semantics for synthetic images, and detach the result for real ones). The
    network's own parameters get no gradient. ``precision``: the forward's autocast context.
    """
    if not supports_class_batching(net):
        raise ValueError("class-batched gradients need a ConvNet without batch norm (samples must not interact)")
    if len(batches) != len(classes):
        raise ValueError(f"{len(batches)} batches for {len(classes)} classes")
    x, weights = _stack_padded(batches)
    labels = torch.tensor(list(classes), dtype=torch.long).to(x.device, non_blocking=True)  # no host sync
    names = [name for name, _ in net.named_parameters()]
    params = {name: p.detach() for name, p in net.named_parameters()}

    def class_loss(p: dict, xk: torch.Tensor, yk: torch.Tensor, wk: torch.Tensor) -> torch.Tensor:
        with precision():
            logits = functional_call(net, p, (xk,))
        ce = F.cross_entropy(logits.float(), yk.expand(xk.shape[0]), reduction="none")
        return (ce * wk).sum()

    with _unfused(net):
        grads = vmap(grad(class_loss), in_dims=(None, 0, 0, 0))(params, x, labels, weights)
    return [grads[name] for name in names]
