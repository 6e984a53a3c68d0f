"""DM: distribution matching (Zhao & Bilen 2023), batched over classes.

Per iteration: a fresh random network with frozen parameters; for each class, a Siamese DSA draw
applied to ``batch_real`` real images and the class's IPC synthetic images; the loss is
Σ_c ||mean(embed(real_c)) − mean(embed(syn_c))||². The published code embeds class by class;
here the real images go through the network without autograd (on a GPU all classes in one pass;
on a CPU one class's batch at a time, so that each pass's activations stay small (a 2,560-image pass
makes GB-sized ones)), all synthetic images through
one pass with autograd, and :func:`medistill.ops.distribution_match_loss` reduces them in one op.
Class-parallel: each rank does this for the classes it owns and needs no communication per
iteration (its images get gradient only from its own classes' terms).
The fresh network is one module re-drawn in place (:mod:`.network_refresh`): the same values as
building one, without the host work of building it.

Multi-label data (ChestMNIST, K findings): the classes are the dataset's groups (:mod:`.base`): group k
< K holds every training image showing finding k (whatever else it shows), group K the images with no
finding, each with IPC synthetic images. DM matches each group's mean embedding with its synthetic
images' mean embedding, as for a class; no label enters the loss. The synthetic images of group g are
then labelled with the group's target (the mean label vector of its real images: 1 for finding g and
each other finding's co-occurrence rate in the group; all 0 for "no finding"), and networks evaluating
the set train on those targets with BCE and are scored on the real multi-label test split.
"""
from __future__ import annotations

import torch

from ..ops import distribution_match_loss
from .base import DistillMethod
from .network_refresh import NetworkRefresher


class DM(DistillMethod):
    name = "dm"

    _refresher: NetworkRefresher | None = None

    def fresh_network(self) -> torch.nn.Module:
        """The iteration's random network, frozen: what :meth:`sample_network` would return, re-drawn in place."""
        if self._refresher is None:
            self._refresher = NetworkRefresher(self.build_network, self.device)
            self._refresher.net.train()
            self._refresher.net.requires_grad_(False)
        return self._refresher(self.generator)

    def step(self) -> torch.Tensor:
        net = self.fresh_network()
        reals, syns, real_labels = [], [], []
        for c in self.classes:
            real = self.sample_real(c, self.config.batch_real)
            real_aug, syn_aug = self.siamese(c, real, self.images[self.class_slice(c)])
            reals.append(real_aug)
            syns.append(syn_aug)
            real_labels.append(torch.full((len(real),), c, dtype=torch.long, device=self.device))
        with torch.no_grad(), self.network_precision():
            if torch.device(self.device).type == "cpu":
                emb_real = torch.cat([net.embed(r) for r in reals])
            else:
                emb_real = net.embed(torch.cat(reals))
        with self.network_precision():
            emb_syn = net.embed(torch.cat(syns))
        emb_real, emb_syn = emb_real.float(), emb_syn.float()  # the loss op runs in float32
        loss = distribution_match_loss(emb_real, torch.cat(real_labels), emb_syn, self.local_labels,
                                       self.num_classes)  # classes absent here are skipped
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.iteration += 1
        return loss.detach()
