"""MTT: matching training trajectories (Cazenavette et al. 2022).

Per iteration: pick an expert and a start epoch s ≤ max_start_epoch; starting from θ_s, take
``syn_steps`` SGD steps on synthetic minibatches (unseeded DSA, align_corners=True) with a
learnable learning rate, keeping the graph; the loss ||w_N − θ_{s+M}||² / ||θ_s − θ_{s+M}||²
(:func:`medistill.ops.trajectory_match_loss`) is backpropagated to the images and the learning rate.
With ``zca=True`` every split is ZCA-whitened first (:mod:`medistill.data.zca`), so the images are
initialised, distilled and saved in the whitened space of the experts; the set carries the transform.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.zca import fit_zca, whiten_dataset
from ..ops import trajectory_match_loss
from .base import DistillMethod
from .experts import load_experts, matching_zca
from .flat_params import forward_flat


class MTT(DistillMethod):
    name = "mtt"

    def __init__(self, dataset, config, device="cpu", dist=None):
        if config.expert_dir is None:
            raise ValueError("MTT needs expert trajectories: set expert_dir (medistill experts … --out DIR)")
        if dist is not None and dist.is_distributed:
            raise ValueError("MTT is not class-parallel (every step trains on the whole synthetic set): run "
                             "`medistill distill --method mtt` in one process; `medistill experts` scales out")
        self.manifest, self.expert_files = load_experts(config.expert_dir, dataset, config.model)
        self.zca = matching_zca(self.manifest, config.expert_dir, fit_zca(dataset) if config.zca else None)
        if self.zca is not None:
            dataset = whiten_dataset(dataset, self.zca)
        super().__init__(dataset, config, device, dist)
        needed = config.max_start_epoch + config.expert_epochs
        if self.manifest["epochs"] < needed:
            raise ValueError(f"experts have {self.manifest['epochs']} epochs; max_start_epoch + expert_epochs "
                             f"= {needed} needs at least that many")
        self.syn_lr = torch.tensor(config.lr_teacher, device=self.device, requires_grad=True)
        self.lr_optimizer = torch.optim.SGD([self.syn_lr], lr=config.lr_lr, momentum=config.momentum_lr)
        self.student = self.build_network().to(self.device)
        # Every unrolled step is differentiated twice (create_graph), which the fused ConvNet block
        # serves by recomputing the unfused chain: on the H200 that made an iteration 0.73x the
        # published loop's speed (BENCHMARKS.md). MTT runs the modules one by one.
        if hasattr(self.student, "fused_blocks"):
            self.student.fused_blocks = False
        self._cache: dict[int, torch.Tensor] = {}

    def trajectory(self, index: int) -> torch.Tensor:
        if index not in self._cache:
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[index] = torch.load(self.expert_files[index], map_location="cpu", weights_only=True).float()
        return self._cache[index]

    def step(self) -> torch.Tensor:
        cfg = self.config
        expert = int(torch.randint(len(self.expert_files), (1,), generator=self.generator))
        start = int(torch.randint(cfg.max_start_epoch + 1, (1,), generator=self.generator))
        trajectory = self.trajectory(expert)
        w_start = trajectory[start].to(self.device)
        w_target = trajectory[start + cfg.expert_epochs].to(self.device)
        batch = cfg.batch_syn or len(self.labels)
        w = w_start.clone().requires_grad_(True)
        self.student.train()
        for _ in range(cfg.syn_steps):
            order = torch.randperm(len(self.labels), generator=self.generator)[:batch].to(self.device)
            x = self.augment.independent(self.images[order])
            with self.network_precision():
                logits = forward_flat(self.student, w, x)
            ce = F.cross_entropy(logits.float(), self.labels[order])
            (grad,) = torch.autograd.grad(ce, w, create_graph=True)
            w = w - self.syn_lr * grad
        loss = trajectory_match_loss(w, w_target, w_start)
        self.optimizer.zero_grad(set_to_none=True)
        self.lr_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.lr_optimizer.step()
        self.iteration += 1
        return loss.detach()

    def learned_lr(self) -> float:
        return float(self.syn_lr.detach())

    def extra_state(self) -> dict:
        return {"syn_lr": self.syn_lr.detach().cpu().clone(), "lr_optimizer": self.lr_optimizer.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        with torch.no_grad():
            self.syn_lr.copy_(state["syn_lr"].to(self.device))
        self.lr_optimizer.load_state_dict(state["lr_optimizer"])
