"""MTT: matching training trajectories (Cazenavette et al. 2022).

Per iteration: pick an expert and a start epoch s (see Sampling); starting from θ_s, take ``syn_steps``
SGD steps on synthetic minibatches (unseeded DSA, align_corners=True by default) with a learnable
learning rate, keeping the graph; the loss ||w_N − θ_{s+M}||² / ||θ_s − θ_{s+M}||²
(:func:`medistill.ops.trajectory_match_loss`) is backpropagated to the images and the learning rate.
With ``zca=True`` every split is ZCA-whitened first (:mod:`medistill.data.zca`), so the images are
initialised, distilled and saved in the whitened space of the experts; the set carries the transform.

Sampling, as the published code (GeorgeCazenavette/mtt-distillation, distill.py) does it:

* **Start epoch** s is drawn uniformly from 0 … max_start_epoch − 1 (its ``np.random.randint(0,
  max_start_epoch)``), so max_start_epoch ≥ 1 and the bank needs max_start_epoch − 1 + expert_epochs
  epochs. (medistill before this drew from 0 … max_start_epoch; that range is not kept as an option.)
* **Experts** are walked in passes: at the start of each pass the bank's experts are shuffled (a
  permutation from the shared generator) and then used in that order, each once per pass; after the
  last a new pass is shuffled. (medistill before this drew an expert with replacement every iteration;
  not kept as an option.) The pass order and position are part of the checkpoint (:meth:`MTT.extra_state`),
  so a resumed run ends bit-identical to an uninterrupted one. A checkpoint written before passes
  existed is refused with a message (resuming it would mix the two samplings: start over with --force),
  as is a resume against a bank whose expert files differ from the checkpoint's.
* **Resampling**: the experts must have been trained with the run's DSA ``align_corners`` (True by
  default, the published MTT's; :func:`~medistill.methods.experts.check_align_corners`). Banks made
  before the bank recorded it trained with False and are refused unless ``align_corners=false``.

Draws per iteration, all from the shared generator: the pass permutation (at a pass's start), the
start epoch, then per synthetic step the minibatch order and the DSA parameters.

Multi-label data (ChestMNIST) is refused: the expert trajectories (:mod:`.experts`) are trained with
cross-entropy on one class per image, and matching them with synthetic images labelled by groups of
findings would match trajectories of another loss. Distil ChestMNIST with DM, DC or DSA.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.zca import fit_zca, whiten_dataset
from ..ops import trajectory_match_loss
from .base import DistillMethod
from .experts import check_align_corners, load_experts, matching_zca
from .flat_params import forward_flat


class MTT(DistillMethod):
    name = "mtt"

    def __init__(self, dataset, config, device="cpu", dist=None):
        if dataset.multilabel:
            raise ValueError(f"MTT does not distil multi-label data ({dataset.name}: {dataset.task}): its expert "
                             "trajectories are trained with cross-entropy on one class per image. Use --method dm, dc "
                             "or dsa, which distil one group per finding plus a 'no finding' group")
        if config.expert_dir is None:
            raise ValueError("MTT needs expert trajectories: set expert_dir (medistill experts … --out DIR)")
        if dist is not None and dist.is_distributed:
            raise ValueError("MTT is not class-parallel (every step trains on the whole synthetic set): run "
                             "`medistill distill --method mtt` in one process; `medistill experts` scales out")
        if config.max_start_epoch < 1:
            raise ValueError(f"max_start_epoch must be at least 1 (got {config.max_start_epoch}): start epochs "
                             "are drawn from 0 … max_start_epoch − 1, as in the published MTT's "
                             "randint(0, max_start_epoch)")
        self.manifest, self.expert_files = load_experts(config.expert_dir, dataset, config.model)
        self.zca = matching_zca(self.manifest, config.expert_dir, fit_zca(dataset) if config.zca else None)
        check_align_corners(self.manifest, config.expert_dir, config.align_corners)
        if self.zca is not None:
            dataset = whiten_dataset(dataset, self.zca)
        super().__init__(dataset, config, device, dist)
        needed = config.max_start_epoch - 1 + config.expert_epochs
        if self.manifest["epochs"] < needed:
            raise ValueError(f"experts have {self.manifest['epochs']} epochs; the last start epoch (max_start_epoch "
                             f"− 1 = {config.max_start_epoch - 1}) + expert_epochs ({config.expert_epochs}) = "
                             f"{needed} needs at least that many")
        # the pass over the experts: a permutation of range(len(expert_files)), drawn when a pass starts
        self.pass_order: list[int] | None = None
        self.pass_position = 0
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

    def next_expert(self) -> int:
        """The next expert of the current pass; a new shuffled pass (from the shared generator) after the last."""
        if self.pass_position == 0:
            self.pass_order = torch.randperm(len(self.expert_files), generator=self.generator).tolist()
        expert = self.pass_order[self.pass_position]
        self.pass_position = (self.pass_position + 1) % len(self.pass_order)
        return expert

    def step(self) -> torch.Tensor:
        cfg = self.config
        expert = self.next_expert()
        start = int(torch.randint(cfg.max_start_epoch, (1,), generator=self.generator))
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
        return {"syn_lr": self.syn_lr.detach().cpu().clone(), "lr_optimizer": self.lr_optimizer.state_dict(),
                "expert_pass": {"experts": [f.name for f in self.expert_files],
                                "order": None if self.pass_order is None else list(self.pass_order),
                                "position": self.pass_position}}

    def load_extra_state(self, state: dict) -> None:
        if "expert_pass" not in state:
            raise ValueError("this MTT checkpoint predates medistill's shuffled passes over the experts (it drew "
                             "experts with replacement and start epochs from 0 … max_start_epoch); resuming it would "
                             "mix the two samplings, so start the run over with --force")
        walk = state["expert_pass"]
        names = [f.name for f in self.expert_files]
        if walk["experts"] != names:
            gone = sorted(set(walk["experts"]) - set(names))[:5]
            new = sorted(set(names) - set(walk["experts"]))[:5]
            raise ValueError(f"the checkpoint's run walked {len(walk['experts'])} experts of {self.config.expert_dir}, "
                             f"which now holds {len(names)} (missing: {gone or 'none'}; new: {new or 'none'}); resume "
                             "with the same expert files, or start the run over with --force")
        self.pass_order = None if walk["order"] is None else [int(i) for i in walk["order"]]
        self.pass_position = int(walk["position"])
        with torch.no_grad():
            self.syn_lr.copy_(state["syn_lr"].to(self.device))
        self.lr_optimizer.load_state_dict(state["lr_optimizer"])
