"""Faithful pure-PyTorch reimplementations of one iteration of the published loops, for timing only.

They follow the published code's structure — per-class Python loops, eager DSA (the pure-PyTorch
reference of the augmentation), the per-layer matching loss, real embeddings computed with
autograd on and then detached — at the same hyperparameters as medistill's methods, so that
``bench_methods.py`` can time the two side by side. Not used by the package.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from medistill.methods.flat_params import forward_flat
from medistill.models.convnet import AvgPool2x2
from medistill.ops import reference, sample_dsa_params


def as_published(net: torch.nn.Module) -> torch.nn.Module:
    """The network as the published code builds it: ``nn.AvgPool2d(2)`` where medistill's ConvNet has
    its strided-add pool (same weights, same numbers up to rounding). Changes ``net`` in place."""
    for name, module in list(net.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, AvgPool2x2):
                setattr(module, child_name, torch.nn.AvgPool2d(2))
    return net


def eager_siamese(x_real, x_syn, strategy, generator, align_corners=False):
    h, w = x_real.shape[-2:]
    params = sample_dsa_params(1, h, w, strategy=strategy, mode="S", siamese=True, generator=generator,
                               device=x_real.device)
    return (reference.dsa(x_real, params, align_corners=align_corners),
            reference.dsa(x_syn, params, align_corners=align_corners))


def eager_independent(x, strategy, generator, align_corners=False):
    params = sample_dsa_params(x.shape[0], x.shape[-2], x.shape[-1], strategy=strategy, mode="S",
                               siamese=False, generator=generator, device=x.device)
    return reference.dsa(x, params, align_corners=align_corners)


def distance_wb(gwr, gws):
    """The published per-tensor distance ('ours')."""
    shape = gwr.shape
    if len(shape) == 4:
        gwr = gwr.reshape(shape[0], shape[1] * shape[2] * shape[3])
        gws = gws.reshape(shape[0], shape[1] * shape[2] * shape[3])
    elif len(shape) == 3:
        gwr = gwr.reshape(shape[0], shape[1] * shape[2])
        gws = gws.reshape(shape[0], shape[1] * shape[2])
    elif len(shape) == 1:
        return torch.tensor(0, dtype=torch.float, device=gwr.device)
    return torch.sum(1 - torch.sum(gwr * gws, dim=-1) / (torch.norm(gwr, dim=-1) * torch.norm(gws, dim=-1) + 0.000001))


def match_loss(gw_syn, gw_real):
    dis = torch.tensor(0.0, device=gw_real[0].device)
    for ig in range(len(gw_real)):
        dis = dis + distance_wb(gw_real[ig], gw_syn[ig])
    return dis


def dm_iteration(method) -> torch.Tensor:
    """One DM iteration as published: class by class, real embeddings with autograd on."""
    net = as_published(method.sample_network())
    net.train()
    for p in net.parameters():
        p.requires_grad = False
    loss = torch.tensor(0.0, device=method.device)
    for c in range(method.num_classes):
        img_real = method.sample_real(c, method.config.batch_real)
        img_syn = method.images[method.class_slice(c)]
        img_real, img_syn = eager_siamese(img_real, img_syn, method.config.dsa_strategy, method.generator)
        output_real = net.embed(img_real).detach()
        output_syn = net.embed(img_syn)
        loss = loss + torch.sum((torch.mean(output_real, dim=0) - torch.mean(output_syn, dim=0)) ** 2)
    method.optimizer.zero_grad()
    loss.backward()
    method.optimizer.step()
    return loss.detach()


def dc_outer_step(method, net) -> torch.Tensor:
    """One DC/DSA outer step as published: per class grads, per-layer loss, one image update."""
    params = list(net.parameters())
    loss = torch.tensor(0.0, device=method.device)
    for c in range(method.num_classes):
        img_real = method.sample_real(c, method.config.batch_real)
        img_syn = method.images[method.class_slice(c)]
        if method.config.dsa:
            img_real, img_syn = eager_siamese(img_real, img_syn, method.config.dsa_strategy, method.generator)
        lab_real = torch.full((len(img_real),), c, dtype=torch.long, device=method.device)
        lab_syn = torch.full((len(img_syn),), c, dtype=torch.long, device=method.device)
        gw_real = [g.detach() for g in torch.autograd.grad(F.cross_entropy(net(img_real), lab_real), params)]
        gw_syn = torch.autograd.grad(F.cross_entropy(net(img_syn), lab_syn), params, create_graph=True)
        loss = loss + match_loss(gw_syn, gw_real)
    method.optimizer.zero_grad()
    loss.backward()
    method.optimizer.step()
    return loss.detach()


def mtt_iteration(method) -> torch.Tensor:
    """One MTT iteration as published (eager DSA, plain loss expression)."""
    cfg = method.config
    trajectory = method.trajectory(0)
    start = 0
    w_start = trajectory[start].to(method.device)
    w_target = trajectory[start + cfg.expert_epochs].to(method.device)
    w = w_start.clone().requires_grad_(True)
    for _ in range(cfg.syn_steps):
        order = torch.randperm(len(method.labels), generator=method.generator).to(method.device)
        x = eager_independent(method.images[order], cfg.dsa_strategy, method.generator, align_corners=True)
        ce = F.cross_entropy(forward_flat(method.student, w, x), method.labels[order])
        (grad,) = torch.autograd.grad(ce, w, create_graph=True)
        w = w - method.syn_lr * grad
    num_params = w.numel()
    param_loss = torch.nn.functional.mse_loss(w, w_target, reduction="sum") / num_params
    param_dist = torch.nn.functional.mse_loss(w_start, w_target, reduction="sum") / num_params
    loss = param_loss / param_dist
    method.optimizer.zero_grad()
    method.lr_optimizer.zero_grad()
    loss.backward()
    method.optimizer.step()
    method.lr_optimizer.step()
    return loss.detach()
