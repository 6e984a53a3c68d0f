"""DM: distribution matching (Zhao & Bilen 2023), batched over classes.

Per iteration: a fresh random network with frozen parameters; for each class, a Siamese DSA draw
applied to ``batch_real`` real images and the class's IPC synthetic images; the loss is
Σ_c ||mean(embed(real_c)) − mean(embed(syn_c))||². The published code embeds class by class;
here all classes' real images go through one forward pass without autograd, all synthetic images
through one forward pass with it, and :func:`medistill.ops.distribution_match_loss` reduces them.
Class-parallel: each rank does this for the classes it owns and needs no communication per
iteration (its images get gradient only from its own classes' terms).
"""
from __future__ import annotations

import torch

from ..ops import distribution_match_loss
from .base import DistillMethod


class DM(DistillMethod):
    name = "dm"

    def step(self) -> torch.Tensor:
        net = self.sample_network()
        net.train()
        for p in net.parameters():
            p.requires_grad_(False)
        reals, syns, real_labels = [], [], []
        for c in self.classes:
            real = self.sample_real(c, self.config.batch_real)
            real_aug, syn_aug = self.siamese(c, real, self.images[self.class_slice(c)])
            reals.append(real_aug)
            syns.append(syn_aug)
            real_labels.append(torch.full((len(real),), c, dtype=torch.long, device=self.device))
        with torch.no_grad():
            emb_real = net.embed(torch.cat(reals))
        emb_syn = net.embed(torch.cat(syns))
        loss = distribution_match_loss(emb_real, torch.cat(real_labels), emb_syn, self.local_labels,
                                       self.num_classes)  # classes absent here are skipped
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.iteration += 1
        return loss.detach()
