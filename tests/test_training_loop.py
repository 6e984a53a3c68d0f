"""The one SGD epoch loop (:func:`medistill.evaluate.train.train_epoch`) against one epoch written out, and its
two callers in the methods (DC/DSA's inner loop, MTT's experts) against their loops written out: the same
batches, the same augmentation draws, the same updates, so every comparison is ``torch.equal``. (Evaluation's
schedule around it is checked in test_evaluation_recipe.py.) Tiny generated data; seconds on one CPU core."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medistill.data import ImageDataset
from medistill.evaluate.train import train_epoch
from medistill.methods import ExpertConfig, make_config, make_method
from medistill.methods.augmentation import DSAPair
from medistill.methods.experts import train_expert
from medistill.methods.flat_params import flatten_parameters
from medistill.models import build_model

LR = 0.1


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 3))


def _noise(generator):
    """A toy augmentation drawing from ``generator`` (as DSA does), so the interleaving of draws matters."""
    return lambda x: x + 0.5 * torch.randn(x.shape, generator=generator)


def _one_epoch(model, x, y, batch, generator, augment=None, lr=LR):
    """One epoch written out: shuffle, batches in order, plain SGD p ← p − lr·∇ (train mode)."""
    model.train()
    order = torch.randperm(len(y), generator=generator)
    for start in range(0, len(y), batch):
        idx = order[start:start + batch]
        xb = x[idx] if augment is None else augment(x[idx])
        logits = model(xb)
        loss = (F.binary_cross_entropy_with_logits(logits, y[idx]) if y.dim() == 2
                else F.cross_entropy(logits, y[idx]))
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(p.grad, alpha=-lr)


@pytest.mark.parametrize("multilabel", [False, True])
@pytest.mark.parametrize("augmented", [False, True])
def test_train_epoch_is_one_epoch_written_out(multilabel, augmented):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(11, 1, 4, 4, generator=g)  # 11 with batch 4: the last batch is smaller
    y = (torch.rand(11, 3, generator=g) > 0.5).float() if multilabel else torch.arange(11) % 3
    ours, ref = _net(), _net()
    ours.eval()  # train_epoch puts the network in training mode itself (batch norm on batch statistics)
    g_ours, g_ref = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    opt = torch.optim.SGD(ours.parameters(), lr=LR)
    for _ in range(2):
        train_epoch(ours, x, y, opt, 4, g_ours, _noise(g_ours) if augmented else None)
        _one_epoch(ref, x, y, 4, g_ref, _noise(g_ref) if augmented else None)
    assert ours.training
    for a, b in zip(ours.state_dict().values(), ref.state_dict().values()):  # parameters and BN running stats
        assert torch.equal(a, b)
    assert torch.equal(g_ours.get_state(), g_ref.get_state())  # the same draws, no more
    assert not torch.equal(ours[4].weight, _net()[4].weight)  # it trained


def test_train_epoch_autocast_casts_the_logits_to_float32(monkeypatch):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 1, 4, 4, generator=g), torch.arange(8) % 3
    net = _net()
    seen = []

    def bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)

    original = F.cross_entropy
    monkeypatch.setattr(F, "cross_entropy",
                        lambda logits, target: seen.append(logits.dtype) or original(logits, target))
    train_epoch(net, x, y, torch.optim.SGD(net.parameters(), lr=LR), 4, torch.Generator().manual_seed(0),
                autocast=bf16)
    assert seen == [torch.float32, torch.float32]


def _tiny(classes=2, per_class=8, size=16):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = torch.randn(len(labels), 1, size, size, generator=g)
    return ImageDataset(name="generated", train_images=images, train_labels=labels, val_images=images[:4],
                        val_labels=labels[:4], test_images=images[:4], test_labels=labels[:4],
                        mean=torch.zeros(1), std=torch.ones(1), class_names=[str(c) for c in range(classes)],
                        md5="generated")


def test_expert_trajectory_is_its_loop_written_out():
    tiny = _tiny()
    config = ExpertConfig(num_experts=1, epochs=2, batch_size=5, seed=1, dsa_strategy="scale_rotate")
    trajectory = train_expert(tiny, config, 3)
    generator = torch.Generator().manual_seed(config.seed * 100_003 + 3)
    net = build_model(config.model, 1, 2, 16, generator=generator)
    pair = DSAPair(config.dsa_strategy, config.align_corners, generator)
    rows = [flatten_parameters(net)]
    for _ in range(config.epochs):
        _one_epoch(net, tiny.images("train"), tiny.train_labels, config.batch_size, generator, pair.independent,
                   lr=config.lr)
        rows.append(flatten_parameters(net))
    assert trajectory.shape == (config.epochs + 1, rows[0].numel())
    assert torch.equal(trajectory, torch.stack(rows))


@pytest.mark.parametrize("name", ["dc", "dsa"])
def test_dc_inner_loop_is_its_loop_written_out(name):
    method = make_method(name, _tiny(), make_config(name, 3, "quick", batch_real=2, batch_train=4, lr_net=LR))
    net = method.sample_network()
    ref = method.build_network()
    ref.load_state_dict(net.state_dict())
    generator = torch.Generator()
    generator.set_state(method.generator.get_state())
    augment = DSAPair(method.config.dsa_strategy, method.config.align_corners, generator).independent
    method.train_network(net, torch.optim.SGD(net.parameters(), lr=LR))
    for _ in range(method.inner_loop):  # 6 synthetic images, batch 4
        _one_epoch(ref, method.images.detach(), method.labels, 4, generator, augment if name == "dsa" else None)
    assert method.inner_loop > 1
    for a, b in zip(net.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(method.generator.get_state(), generator.get_state())
