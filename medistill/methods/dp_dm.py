"""DP-DM: distribution matching with a differential-privacy guarantee on the training images (docs/privacy.md).

DM's step with the real side made private. Per iteration and class c (owned by this rank): every training
image of c is sampled independently with probability q (Poisson, from c's *private* generator); the sampled
images get the same Siamese DSA draw as the synthetic images (DM's, from c's public generator) and pass the
iteration's random frozen network (drawn from the shared generator, independent of the data); each embedding
is clipped to L2 norm C and the clipped embeddings are summed; Gaussian noise N(0, σ²C² I) is added to the
sum (from c's private generator), which is divided by the public expected count q·N_c. The synthetic
embeddings are clipped alike (post-processing: they depend only on the synthetic images) and the loss is
DM's Σ_c ||noisy_mean_c − mean(clip(embed(syn_c)))||² (:func:`medistill.ops.distribution_match_loss` with one
"real" row per class: the noisy mean).

Adding or removing one training image moves one class's clipped sum by at most C, so the K noisy sums of an
iteration are one Gaussian mechanism with noise multiplier σ and sensitivity C on a Poisson sample of rate q;
T iterations are accounted with Opacus's RDP accountant (:mod:`medistill.privacy.accountant`), σ solved from
(ε, δ, q, T) once and kept for the run (and in its checkpoint).

Private randomness: the sampling and the noise come from per-class generators seeded with a secret
(``dp_secret_seed``, by default drawn from the operating system on rank 0 and shared), never from the run's
public ``seed``: someone who knows the noise can subtract it. The secret lives in the checkpoint only.

Class-parallel: the rank owning class c draws c's sample and noise once, from c's private generator, so the
result equals the one-process run with the same secret.
"""
from __future__ import annotations

import secrets

import torch

from ..distributed import all_gather_objects
from ..ops import distribution_match_loss
from ..privacy import (ACCOUNTANT, DEFAULT_CLIP, DPSettings, accountant_version, clip_rows, clipped_sum,
                       default_delta, default_sample_rate, epsilon_spent, noisy_mean, poisson_mask,
                       private_generators, solve_noise_multiplier)
from .dm import DM

COUNT_RULE = ("public expected count: class c's noisy sum is divided by q·N_c, data-independent given the class "
              "sizes N_c, which are treated as public")
NOT_COVERED = ("the class sizes N_c and N (public); the per-channel normalisation mean/std of the training split "
               "(public, carried by the set); the test split and any evaluation on it; hyperparameter choices and "
               "repeated runs on the same data (each run spends its own ε); timing; the run folder's config.json (the "
               "data's fingerprints) and checkpoint.pt (the private generators' states): never share them")


class DPDM(DM):
    """DM whose real-side statistic is the Poisson-subsampled Gaussian mechanism (module doc)."""

    name = "dm"

    def __init__(self, dataset, config, device: str = "cpu", dist=None):
        if dataset.multilabel:
            raise ValueError(f"differentially private DM distils one class per image; {dataset.name} is multi-label "
                             "(an image in several groups would count in several sums): not supported")
        if config.init != "noise":
            raise ValueError("differentially private DM starts from noise; init=real is refused")
        super().__init__(dataset, config, device, dist)
        sizes = tuple(len(idx) for idx in dataset.group_indices("train"))
        n = sum(sizes)
        delta = config.dp_delta if config.dp_delta is not None else default_delta(n)
        rate = (config.dp_sample_rate if config.dp_sample_rate is not None
                else default_sample_rate(config.batch_real, self.num_classes, n))
        sigma = solve_noise_multiplier(config.dp_epsilon, delta, rate, config.iterations)
        self.dp = DPSettings(epsilon=config.dp_epsilon, delta=delta,
                             clip=config.dp_clip if config.dp_clip is not None else DEFAULT_CLIP, sample_rate=rate,
                             iterations=config.iterations, noise_multiplier=sigma, class_sizes=sizes,
                             delta_rule="given" if config.dp_delta is not None else f"1/(10·N), N = {n}",
                             sample_rate_rule=("given" if config.dp_sample_rate is not None else
                                               f"min(1, K·batch_real/N) = min(1, {self.num_classes}·"
                                               f"{config.batch_real}/{n})"))
        secret = config.dp_secret_seed
        if secret is None:  # rank 0's draw, shared: every rank seeds the same private streams
            secret = all_gather_objects(self.dist, secrets.randbits(63), "sharing the private stream's seed")[0]
        self.private_generators = private_generators(secret, self.num_classes)
        self.accountant_version = accountant_version()

    # --- the step ----------------------------------------------------------------------------------
    def step(self) -> torch.Tensor:
        net = self.fresh_network()
        sums, syns, counts = [], [], []
        for c in self.classes:
            idx = self.class_indices[c]
            mask = poisson_mask(len(idx), self.dp.sample_rate, self.private_generators[c])
            real = self.real_images[idx[mask.to(self.device)]]
            syn = self.images[self.class_slice(c)]
            if len(real):
                real_aug, syn_aug = self.siamese(c, real, syn)
                with torch.no_grad(), self.network_precision():
                    sums.append(clipped_sum(net.embed(real_aug).float(), self.dp.clip))
            else:  # the same single DSA draw from c's generator, so its stream does not depend on the sample
                syn_aug, = self.siamese(c, syn)
                sums.append(None)
            syns.append(syn_aug)
            counts.append(self.dp.expected_count(c))
        with self.network_precision():
            emb_syn = net.embed(torch.cat(syns))
        emb_syn = clip_rows(emb_syn.float(), self.dp.clip)
        means = []
        for c, total, count in zip(self.classes, sums, counts):
            total = torch.zeros(emb_syn.shape[1], device=self.device) if total is None else total
            means.append(noisy_mean(total, count, self.dp.noise_multiplier, self.dp.clip, self.private_generators[c]))
        mean_labels = torch.arange(self.classes.start, self.classes.stop, device=self.device)
        loss = distribution_match_loss(torch.stack(means), mean_labels, emb_syn, self.local_labels, self.num_classes)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.iteration += 1
        return loss.detach()

    # --- the guarantee -------------------------------------------------------------------------------
    def privacy_record(self, iterations: int | None = None) -> dict:
        """The guarantee as it travels with the set (config.json, metadata, summary, export, audit): ε spent
        after ``iterations`` (default: the run's T) and the mechanism's parameters."""
        d = self.dp
        steps = d.iterations if iterations is None else iterations
        return {"mechanism": "DP-DM: Poisson-subsampled Gaussian mechanism on per-class sums of clipped embeddings",
                "epsilon": d.epsilon, "epsilon_spent": epsilon_spent(d.noise_multiplier, d.sample_rate, steps, d.delta),
                "delta": d.delta, "delta_rule": d.delta_rule, "noise_multiplier": d.noise_multiplier,
                "noise_std": d.noise_multiplier * d.clip, "sample_rate": d.sample_rate,
                "sample_rate_rule": d.sample_rate_rule, "clip": d.clip, "iterations": steps,
                "planned_iterations": d.iterations, "accountant": ACCOUNTANT, "accountant_version": self.accountant_version,
                "adjacency": "add or remove one training image", "count": COUNT_RULE,
                "class_sizes": list(d.class_sizes), "train_images": sum(d.class_sizes), "not_covered": NOT_COVERED}

    def run_record(self) -> dict:
        """What config.json records beside the settings."""
        return {"privacy": self.privacy_record()}

    def public_magnitude(self) -> float:
        """The divergence guard's reference without looking at the images: the largest |value| a pixel in [0, 1]
        takes after the (public) per-channel normalisation."""
        mean, std = self.dataset.mean.float().cpu(), self.dataset.std.float().cpu()
        return float((torch.maximum(mean.abs(), (1 - mean).abs()) / std).max())

    def synthetic_set(self, metadata: dict):
        """The set with the guarantee in its metadata, the secret seed and the training data's fingerprint left out
        (a hash of the private data would tell it apart from any neighbouring dataset)."""
        hyper = dict(metadata.get("hyperparameters") or {})
        if hyper.get("dp_secret_seed") is not None:
            hyper["dp_secret_seed"] = "withheld"
        metadata = {**metadata, "hyperparameters": hyper, "dataset_md5": None,
                    "dataset_md5_withheld": "a fingerprint of the private training data is not released under DP",
                    "privacy": self.privacy_record(self.iteration)}
        if metadata.get("dataset_provenance"):  # an image folder: its load settings stay, its hashes and size go
            withheld = [k for k in ("content_md5", "fingerprint", "bytes") if k in metadata["dataset_provenance"]]
            metadata["dataset_provenance"] = {**metadata["dataset_provenance"], **dict.fromkeys(withheld),
                                              "withheld_under_dp": withheld}
        return super().synthetic_set(metadata)

    # --- resume --------------------------------------------------------------------------------------
    def extra_state(self) -> dict:
        owned = {c: self.private_generators[c].get_state() for c in self.classes}
        merged: dict[int, torch.Tensor] = {}
        for part in all_gather_objects(self.dist, owned, "gathering the private generators' states"):
            merged.update(part)
        return {**super().extra_state(), "noise_multiplier": self.dp.noise_multiplier,
                "private_generators": [merged[c] for c in range(self.num_classes)]}

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        if "private_generators" not in state:
            raise ValueError("this checkpoint was not made by a differentially private run; it cannot be resumed "
                             "with DP settings (start over with --force)")
        for g, s in zip(self.private_generators, state["private_generators"]):
            g.set_state(s)
        self.dp = DPSettings(**{**self.dp.__dict__, "noise_multiplier": state["noise_multiplier"]})  # σ is the run's
