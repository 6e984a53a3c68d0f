"""The interface every distillation method implements, and what they share.

A method owns the synthetic images, their labels, the image optimiser and its random streams
(:mod:`.random_streams`): one shared ``torch.Generator`` (networks, inner-loop training) and one
per class (initial images, real batches, Siamese DSA), so a seed fixes the run and a checkpoint of
:meth:`state_dict` resumes it bit-identically.

Class-parallel runs: with a :class:`~medistill.distributed.DistContext` of W ranks, this rank owns
the classes :func:`~medistill.distributed.class_shard` gives it and holds only their images
(``self.images``: (len(classes)·IPC, C, H, W)); :meth:`full_images` gathers the whole set. Every
rank draws the same networks from the shared generator, and a class's draws come from its own
generator, so the result equals the one-process run up to floating-point reduction order. In one
process ``classes`` is every class and nothing is communicated.

Real images are taken from the dataset's stored split (``dataset.images("train")``, on the method's
device): uint8 MedMNIST pixels are normalised batch by batch, so the whole split is never held as floats.

Multi-label data (ChestMNIST, K findings): the "classes" a method distils are the dataset's groups
(:meth:`~medistill.data.ImageDataset.group_indices`): one per finding, holding every training image that
shows it, plus one "no finding" group, K + 1 in all, each with IPC synthetic images. ``self.labels``
holds each synthetic image's group; ``self.targets`` what its loss trains it towards: the class index
for single-label data, and for multi-label data the group's target (:meth:`~medistill.data.ImageDataset.
group_targets`: 1 for its finding, the finding's co-occurrence rate in the group for the others, all 0 for
"no finding"), used with BCE with logits (:meth:`loss`). The saved set carries those targets as its labels
and the groups beside them; it is scored on the real multi-label test split.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data import ImageDataset, ImageSet
from ..distributed import SHARDING, DistContext, all_gather_objects, all_gather_rows, class_shard
from ..evaluate.train import training_loss
from ..models import build_model
from ..selection import check_ipc
from .augmentation import DSAPair
from .precision import network_autocast, warn_if_cpu
from .random_streams import class_generators


class DistillMethod:
    """Base class: subclasses implement :meth:`step` (one iteration → this rank's detached share of the
    loss; the sum over ranks is the loss)."""

    name = "base"
    zca = None  # the ZCA transform the images live in (MTT with zca=True), carried by the synthetic set
    uses_dsa = True  # the evaluation trains with DSA for DSA/DM/MTT sets (docs/evaluation.md)

    def __init__(self, dataset: ImageDataset, config, device: str = "cpu", dist: DistContext | None = None):
        check_ipc(dataset, config.ipc)
        warn_if_cpu(config.amp, device)
        self.dataset = dataset
        self.config = config
        self.device = torch.device(device)
        self.dist = dist or DistContext(device=str(device))
        self.multilabel = dataset.multilabel
        self.num_classes = dataset.num_groups  # the classes distilled: the dataset's groups (see the module doc)
        self.ipc = config.ipc
        self.classes = class_shard(self.num_classes, self.dist.rank, self.dist.world_size)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.class_generators = class_generators(config.seed, self.num_classes)
        self.real_images = dataset.images("train").to(self.device)  # normalised per batch when indexed
        self.class_indices = [idx.to(self.device) for idx in dataset.group_indices("train")]
        self.augment = DSAPair(config.dsa_strategy, config.align_corners, self.generator)
        self.labels = torch.arange(self.num_classes, device=self.device).repeat_interleave(self.ipc)
        self.local_labels = self.labels[self.classes.start * self.ipc : self.classes.stop * self.ipc]
        if self.multilabel:
            self.real_targets = dataset.train_labels.float().to(self.device)
            self.targets = dataset.group_targets().to(self.device).repeat_interleave(self.ipc, dim=0)
        else:
            self.targets = self.labels
        self.images = self.initial_images().requires_grad_(True)
        self.optimizer = torch.optim.SGD([self.images], lr=config.lr_img, momentum=config.momentum_img)
        self.iteration = 0

    # --- shared pieces -------------------------------------------------------------------------
    def initial_images(self) -> torch.Tensor:
        """(len(classes)·IPC, C, H, W): per owned class, random real images of it or standard-normal noise."""
        blocks = []
        for c in self.classes:
            if self.config.init == "noise":
                shape = (self.ipc,) + tuple(self.real_images.shape[1:])
                blocks.append(torch.randn(shape, generator=self.class_generators[c]).to(self.device))
            else:
                blocks.append(self.sample_real(c, self.ipc))
        return torch.cat(blocks).detach().clone()

    def sample_real(self, c: int, n: int) -> torch.Tensor:
        """n random training images of class c (all if the class is smaller), from c's generator: (n, C, H, W)."""
        return self.real_images[self.sample_indices(c, n)]

    def sample_indices(self, c: int, n: int) -> torch.Tensor:
        """Train-split indices of n random images of class c (all if the class is smaller), from c's generator."""
        idx = self.class_indices[c]
        # non_blocking: a pageable host→device copy is staged at once and does not wait for the GPU
        pick = torch.randperm(len(idx), generator=self.class_generators[c])[:n].to(self.device, non_blocking=True)
        return idx[pick]

    def class_targets(self, c: int) -> torch.Tensor:
        """The loss targets of class (group) c's IPC synthetic images: (IPC,) int64 or (IPC, K) float."""
        return self.targets[c * self.ipc : (c + 1) * self.ipc]

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy for class indices, BCE with logits for multi-label targets (float32 logits)."""
        return training_loss(logits, targets)

    def siamese(self, c: int, real: torch.Tensor, syn: torch.Tensor) -> list[torch.Tensor]:
        """Class c's Siamese DSA draw applied to its real and synthetic batch."""
        return self.augment.siamese(real, syn, generator=self.class_generators[c])

    def sample_network(self) -> nn.Module:
        """A fresh network initialised from the shared generator (the same on every rank)."""
        return self.build_network(self.generator).to(self.device, non_blocking=True)  # no host sync

    def build_network(self, generator: torch.Generator | None = None) -> nn.Module:
        """``config.model`` for this dataset's channels, classes and size, on the CPU (or the current
        default device); drawn from ``generator`` when given."""
        d = self.dataset
        return build_model(self.config.model, d.channels, d.num_classes, d.image_size, generator=generator)

    def network_skeleton(self) -> nn.Module:
        """The network's architecture on the meta device: no memory, no random draws."""
        with torch.device("meta"):
            return self.build_network()

    def network_precision(self):
        """Context for a network forward pass: bf16 autocast when ``config.amp == 'bf16'``, else nothing.
        Cast what comes out to float32 before a loss (:mod:`.precision`)."""
        return network_autocast(self.config.amp, self.device)

    def class_slice(self, c: int) -> slice:
        """Rows of class c (owned by this rank) in ``self.images``."""
        start = (c - self.classes.start) * self.ipc
        return slice(start, start + self.ipc)

    def full_images(self) -> torch.Tensor:
        """(K·IPC, C, H, W) detached: every rank's images gathered in class order (no copy in one process)."""
        return all_gather_rows(self.dist, self.images, "gathering the synthetic images")

    # --- the interface ---------------------------------------------------------------------------
    def step(self) -> torch.Tensor:
        raise NotImplementedError

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        """The whole run's state, the same on every rank (a collective when distributed): all images, the
        optimiser state with the momentum of all images, the shared and every class's generator state.
        A checkpoint therefore resumes with any number of ranks."""
        owned = {c: self.class_generators[c].get_state() for c in self.classes}
        merged: dict[int, torch.Tensor] = {}
        for part in all_gather_objects(self.dist, owned, "gathering the class generators' states"):
            merged.update(part)
        return {
            "iteration": self.iteration,
            "images": self.full_images().cpu().clone(),
            "optimizer": self._full_optimizer_state(),
            "generator": self.generator.get_state(),
            "class_generators": [merged[c] for c in range(self.num_classes)],
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if "class_generators" not in state:
            raise ValueError("this checkpoint predates medistill's per-class random streams and cannot be resumed "
                             "with this version; start the run over with --force")
        rows = slice(self.classes.start * self.ipc, self.classes.stop * self.ipc)
        with torch.no_grad():
            self.images.copy_(state["images"][rows].to(self.device))
        optimizer_state = state["optimizer"]
        buffers = {k: dict(v) for k, v in optimizer_state["state"].items()}
        for entry in buffers.values():
            if entry.get("momentum_buffer") is not None:
                entry["momentum_buffer"] = entry["momentum_buffer"][rows]
        self.optimizer.load_state_dict({**optimizer_state, "state": buffers})
        self.generator.set_state(state["generator"])
        for g, s in zip(self.class_generators, state["class_generators"]):
            g.set_state(s)
        self.iteration = state["iteration"]
        self.load_extra_state(state["extra"])

    def _full_optimizer_state(self) -> dict:
        """The image optimiser's state_dict with each rank's momentum rows gathered into one (K·IPC, …)."""
        state = self.optimizer.state_dict()
        local = state["state"].get(0, {}).get("momentum_buffer")
        has_momentum = all_gather_objects(self.dist, local is not None, "checking the optimiser state")
        if all(has_momentum):
            full = all_gather_rows(self.dist, local, "gathering the optimiser momentum").cpu().clone()
            state["state"] = {0: {**state["state"][0], "momentum_buffer": full}}
        return state

    def learned_lr(self) -> float | None:
        return None

    def synthetic_set(self, metadata: dict) -> ImageSet:
        """The whole synthetic set (a collective when distributed)."""
        d = self.dataset
        images = self.full_images().cpu().clone()
        if self.dist.is_distributed:
            metadata = {**metadata, "distributed": {"world_size": self.dist.world_size, "class_sharding": SHARDING}}
        if self.multilabel:
            metadata = {**metadata, "groups": d.group_names,
                        "label_rule": "each group's synthetic images carry the mean label vector of its real "
                                      "training images (1 for its finding, co-occurrence rates for the others; "
                                      "0 for no finding)"}
        labels = self.targets.cpu() if self.multilabel else self.labels.cpu()
        return ImageSet(images=images, labels=labels, mean=d.mean, std=d.std, class_names=d.class_names,
                        metadata={**metadata, "learned_lr": self.learned_lr(), "task": d.task}, zca=self.zca,
                        groups=self.labels.cpu() if self.multilabel else None)
