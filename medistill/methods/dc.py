"""DC (gradient matching, Zhao et al. 2021) and DSA (DC with Siamese augmentation, Zhao & Bilen 2021).

Per iteration: a fresh network. For each of ``outer_loop`` steps: for every class, the gradient of
the cross-entropy on ``batch_real`` real images (detached) and on the class's synthetic images
(``create_graph=True``) with respect to all network parameters; the per-class gradient lists are
stacked and matched in one :func:`medistill.ops.gradient_match_loss_batched` call; one SGD step on
the images. Between outer steps (not after the last) the network trains ``inner_loop`` epochs on the
synthetic set (batch ``batch_train``, SGD ``lr_net``; unseeded DSA for DSA), with evaluation's epoch loop
(:func:`medistill.evaluate.train.train_epoch`).
``class_batching``: the per-class gradients come from a class loop (``loop``) or from one vmapped
pass over all classes (``vmap``, :mod:`.class_batched_gradients`); ``auto`` (default) takes vmap on
CUDA, where the loop is host-bound, and the loop on CPU, where vmap was measured slower
(BENCHMARKS.md). Both draw the same random numbers; results differ by float rounding only.
Class-parallel: each rank matches the classes it owns; before each inner-loop network update the
synthetic set is all-gathered, and every rank trains the same network identically (shared generator).

Multi-label data (ChestMNIST): the classes are the dataset's groups, one per finding plus "no finding"
(:mod:`.base`). Group g's real gradient is that of the BCE-with-logits loss of its real batch against
those images' own multi-hot labels; its synthetic gradient that of the BCE of its synthetic images against
the group's target (the mean label vector of the group's real images, so both sides expect the same
labels on average); the inner loop trains with BCE against the targets. The per-group gradients come
from the class loop (``class_batching`` auto → loop; ``vmap`` is refused: the vmapped pass is written
for one class index per batch).
"""
from __future__ import annotations

import torch

from ..evaluate.train import train_epoch
from ..ops import gradient_match_loss_batched
from . import class_batched_gradients
from .base import DistillMethod

CLASS_BATCHING = ("auto", "loop", "vmap")


class DC(DistillMethod):
    name = "dc"

    def __init__(self, dataset, config, device="cpu", dist=None):
        if config.class_batching not in CLASS_BATCHING:
            raise ValueError(f"unknown class_batching {config.class_batching!r}; choose one of {', '.join(CLASS_BATCHING)}")
        if config.class_batching == "vmap" and dataset.multilabel:
            raise ValueError(f"class_batching='vmap' computes one class index per batch; {dataset.name} is multi-label "
                             "(use class_batching=loop or auto)")
        super().__init__(dataset, config, device, dist)
        batchable = (class_batched_gradients.supports_class_batching(self.network_skeleton())
                     and not self.multilabel)
        if config.class_batching == "vmap" and not batchable:
            raise ValueError(f"class_batching='vmap' needs a ConvNet without batch norm; {config.model!r} is not one "
                             "(use class_batching=loop)")
        self.vmap_classes = batchable and (config.class_batching == "vmap" or
                                           (config.class_batching == "auto" and self.device.type == "cuda"))

    @property
    def uses_dsa(self) -> bool:  # DC sets are evaluated without augmentation, DSA sets with it
        return self.config.dsa

    def class_batches(self, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Class c's real batch (batch_real, C, H, W) and synthetic images (IPC, C, H, W), Siamese-augmented for DSA."""
        real, syn, _ = self.class_batches_with_targets(c)
        return real, syn

    def class_batches_with_targets(self, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`class_batches` and the real batch's targets: (batch_real,) class c, or the images' own
        multi-hot labels (batch_real, K) for multi-label data."""
        idx = self.sample_indices(c, self.config.batch_real)
        real = self.real_images[idx]
        if self.multilabel:
            y_real = self.real_targets[idx]
        else:
            y_real = torch.full((len(real),), c, dtype=torch.long, device=self.device)
        syn = self.images[self.class_slice(c)]
        if self.config.dsa:
            real, syn = self.siamese(c, real, syn)
        return real, syn, y_real

    def class_gradients(self, net, params, c: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        real, syn, y_real = self.class_batches_with_targets(c)
        with self.network_precision():
            out_real, out_syn = net(real), net(syn)
        g_real = torch.autograd.grad(self.loss(out_real.float(), y_real), params)
        y_syn = (self.class_targets(c) if self.multilabel
                 else torch.full((len(syn),), c, dtype=torch.long, device=self.device))
        g_syn = torch.autograd.grad(self.loss(out_syn.float(), y_syn), params, create_graph=True)
        return [g.detach() for g in g_real], list(g_syn)

    def batched_class_gradients(self, net) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every owned class's real and synthetic gradients from one vmapped pass each: two lists over
        the parameters of (len(classes), *p.shape); the same draws, in the same order, as the loop."""
        reals, syns = zip(*(self.class_batches(c) for c in self.classes))
        classes = list(self.classes)
        g_real = class_batched_gradients.class_gradients(net, reals, classes, self.network_precision)
        g_syn = class_batched_gradients.class_gradients(net, syns, classes, self.network_precision)
        return [g.detach() for g in g_real], g_syn

    def train_network(self, net, net_optimizer) -> None:
        """``inner_loop`` epochs on the synthetic set (all ranks' images, detached): :func:`train_epoch`,
        batch ``batch_train``, shuffled from the shared generator; for DSA unseeded per-sample DSA from it."""
        augment = self.augment.independent if self.config.dsa else None
        images = self.full_images()
        for _ in range(self.inner_loop):
            train_epoch(net, images, self.targets, net_optimizer, self.config.batch_train, self.generator, augment,
                        autocast=self.network_precision)

    def outer_step(self, net, params) -> torch.Tensor:
        """Match every owned class's gradients in one batched loss call; one image update. Returns the loss."""
        if self.vmap_classes:
            g_real, g_syn = self.batched_class_gradients(net)
        else:
            per_class = [self.class_gradients(net, params, c) for c in self.classes]
            g_real = [torch.stack([pc[0][i] for pc in per_class]) for i in range(len(params))]
            g_syn = [torch.stack([pc[1][i] for pc in per_class]) for i in range(len(params))]
        loss = gradient_match_loss_batched(g_real, g_syn, metric=self.config.metric).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    @property
    def outer_loop(self) -> int:
        return self.config.loops()[0]

    @property
    def inner_loop(self) -> int:
        return self.config.loops()[1]

    def step(self) -> torch.Tensor:
        net = self.sample_network()
        net.train()
        params = list(net.parameters())
        net_optimizer = torch.optim.SGD(net.parameters(), lr=self.config.lr_net)
        total = torch.zeros((), device=self.device)
        for outer in range(self.outer_loop):
            total = total + self.outer_step(net, params)
            if outer == self.outer_loop - 1:
                break
            self.train_network(net, net_optimizer)
        self.iteration += 1
        return total / (self.outer_loop * self.num_classes)


class DSA(DC):
    """DC with Siamese DSA on both batches and unseeded DSA in the inner loop (config.dsa=True)."""

    name = "dsa"

    def __init__(self, dataset, config, device="cpu", dist=None):
        if not config.dsa:
            raise ValueError("DSA needs config.dsa=True (make_config('dsa', …) sets it)")
        super().__init__(dataset, config, device, dist)
