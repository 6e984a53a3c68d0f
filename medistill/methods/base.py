"""The interface every distillation method implements, and what they share.

A method owns the synthetic images (K·IPC, C, H, W), their labels, the image optimiser and one
``torch.Generator`` from which everything random is drawn (real batches, networks, augmentation),
so a seed fixes the run and a checkpoint of :meth:`state_dict` resumes it bit-identically.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data import ImageDataset, ImageSet
from ..models import build_model
from ..selection import check_ipc
from .augmentation import DSAPair


class DistillMethod:
    """Base class: subclasses implement :meth:`step` (one iteration → detached scalar loss)."""

    name = "base"
    uses_dsa = True  # the evaluation trains with DSA for DSA/DM/MTT sets (REFERENCE.md)

    def __init__(self, dataset: ImageDataset, config, device: str = "cpu"):
        check_ipc(dataset, config.ipc)
        self.dataset = dataset
        self.config = config
        self.device = torch.device(device)
        self.num_classes = dataset.num_classes
        self.ipc = config.ipc
        self.generator = torch.Generator().manual_seed(config.seed)
        self.real_images = dataset.train_images.to(self.device)
        self.class_indices = [idx.to(self.device) for idx in dataset.class_indices("train")]
        self.augment = DSAPair(config.dsa_strategy, config.align_corners, self.generator)
        self.labels = torch.arange(self.num_classes, device=self.device).repeat_interleave(self.ipc)
        self.images = self.initial_images().requires_grad_(True)
        self.optimizer = torch.optim.SGD([self.images], lr=config.lr_img, momentum=config.momentum_img)
        self.iteration = 0

    # --- shared pieces -------------------------------------------------------------------------
    def initial_images(self) -> torch.Tensor:
        """(K·IPC, C, H, W): random real images of each class, or standard-normal noise."""
        if self.config.init == "noise":
            shape = (self.num_classes * self.ipc,) + tuple(self.real_images.shape[1:])
            return torch.randn(shape, generator=self.generator).to(self.device)
        return torch.cat([self.sample_real(c, self.ipc) for c in range(self.num_classes)]).detach().clone()

    def sample_real(self, c: int, n: int) -> torch.Tensor:
        """n random training images of class c (all of them if the class is smaller): (n, C, H, W)."""
        idx = self.class_indices[c]
        pick = torch.randperm(len(idx), generator=self.generator)[:n].to(self.device)
        return self.real_images[idx[pick]]

    def sample_network(self) -> nn.Module:
        """A fresh network initialised from the method's generator."""
        d = self.dataset
        return build_model(self.config.model, d.channels, d.num_classes, d.image_size,
                           generator=self.generator).to(self.device)

    def class_slice(self, c: int) -> slice:
        return slice(c * self.ipc, (c + 1) * self.ipc)

    # --- the interface ---------------------------------------------------------------------------
    def step(self) -> torch.Tensor:
        raise NotImplementedError

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {
            "iteration": self.iteration,
            "images": self.images.detach().cpu().clone(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.images.copy_(state["images"].to(self.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.iteration = state["iteration"]
        self.load_extra_state(state["extra"])

    def learned_lr(self) -> float | None:
        return None

    def synthetic_set(self, metadata: dict) -> ImageSet:
        d = self.dataset
        return ImageSet(images=self.images.detach().cpu().clone(), labels=self.labels.cpu(), mean=d.mean,
                        std=d.std, class_names=d.class_names,
                        metadata={**metadata, "learned_lr": self.learned_lr(), "task": d.task})
