"""MTT's sampling and expert defaults follow the published code (GeorgeCazenavette/mtt-distillation):
start epochs from 0 … max_start_epoch − 1, experts walked in seeded shuffled passes (kept across a
resume), and experts trained with DSA align_corners=True, recorded in the bank's manifest.
Tiny generated data (2 classes, 1×16×16), so every test runs in seconds on one CPU core."""
import json

import pytest
import torch

import medistill.methods.augmentation as augmentation
from medistill.data import ImageDataset, ImageSet
from medistill.methods import ExpertConfig, build_experts, distill, make_config, make_method
from medistill.methods.experts import train_expert

CLASSES, SIZE = 2, 16
EXPERT_EPOCHS = 3  # epochs in the bank: max_start_epoch 3 with expert_epochs 1 needs exactly 3
FAST = dict(syn_steps=1, expert_epochs=1, max_start_epoch=3, lr_img=10.0, lr_lr=1e-6, log_every=1,
            checkpoint_every=2)


@pytest.fixture(scope="module")
def tiny():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(CLASSES).repeat_interleave(16)
    images = torch.randn(len(labels), 1, SIZE, SIZE, generator=g)
    return ImageDataset(name="generated", train_images=images, train_labels=labels, val_images=images[:4],
                        val_labels=labels[:4], test_images=images[:4], test_labels=labels[:4],
                        mean=torch.zeros(1), std=torch.ones(1), class_names=[str(c) for c in range(CLASSES)],
                        md5="generated")


@pytest.fixture(scope="module")
def bank(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bank")
    return build_experts(tiny, ExpertConfig(num_experts=3, epochs=EXPERT_EPOCHS, batch_size=16, seed=0), folder)


def _mtt(tiny, bank, **overrides):
    return make_method("mtt", tiny, make_config("mtt", 1, "quick", expert_dir=str(bank), **{**FAST, **overrides}))


def _record(method, steps):
    """Run ``steps`` iterations; returns the (expert, start epoch) each one used."""
    picks = []
    load = method.trajectory

    class Rows:  # the trajectory as step() indexes it: the first row it reads is θ_start
        def __init__(self, index):
            self.index, self.rows, self.first = index, load(index), True

        def __getitem__(self, epoch):
            if self.first:
                picks.append((self.index, epoch))
                self.first = False
            return self.rows[epoch]

    method.trajectory = Rows
    for _ in range(steps):
        method.step()
    return picks


def test_start_epochs_cover_zero_to_max_start_minus_one(tiny, bank):
    # max_start_epoch − 1 + expert_epochs = 3 = the bank's epochs: the old check (max_start_epoch +
    # expert_epochs = 4) refused this bank, and the old draw reached start epoch 3
    starts = [s for _, s in _record(_mtt(tiny, bank), 48)]
    assert set(starts) == {0, 1, 2}
    with pytest.raises(ValueError, match="max_start_epoch must be at least 1"):
        _mtt(tiny, bank, max_start_epoch=0)
    with pytest.raises(ValueError, match=r"experts have 3 epochs.*= 4 needs"):
        _mtt(tiny, bank, max_start_epoch=4)


def test_experts_are_walked_in_seeded_shuffled_passes(tiny, bank):
    n = 3
    experts = [e for e, _ in _record(_mtt(tiny, bank, seed=5), 4 * n)]
    passes = [experts[i : i + n] for i in range(0, len(experts), n)]
    assert all(sorted(p) == list(range(n)) for p in passes), passes  # each expert once per pass
    assert len({tuple(p) for p in passes}) > 1  # each pass is shuffled anew
    again = [e for e, _ in _record(_mtt(tiny, bank, seed=5), 4 * n)]
    assert again == experts  # the order comes from the seed
    other = [e for e, _ in _record(_mtt(tiny, bank, seed=6), 4 * n)]
    assert other != experts


def test_experts_train_with_align_corners_true_and_the_bank_records_it(tiny, bank, monkeypatch, tmp_path):
    assert ExpertConfig().align_corners is True
    assert json.loads((bank / "manifest.json").read_text())["align_corners"] is True

    seen = []
    real_dsa = augmentation.dsa

    def recording_dsa(x, params, align_corners):
        seen.append(align_corners)
        return real_dsa(x, params, align_corners=align_corners)

    monkeypatch.setattr(augmentation, "dsa", recording_dsa)
    config = ExpertConfig(num_experts=1, epochs=1, batch_size=16, dsa_strategy="scale_rotate")
    new = train_expert(tiny, config, 0)
    assert seen and all(a is True for a in seen)
    seen.clear()
    old = train_expert(tiny, ExpertConfig(**{**config.__dict__, "align_corners": False}), 0)
    assert seen and all(a is False for a in seen)
    assert torch.equal(new[0], old[0]) and not torch.equal(new[-1], old[-1])  # same init, other resampling

    # a bank made before the setting (no key in its manifest) trained with align_corners=False:
    # MTT refuses it unless it distils with align_corners=False, and a new bank never continues it
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    manifest = json.loads((bank / "manifest.json").read_text())
    del manifest["align_corners"]
    (legacy / "manifest.json").write_text(json.dumps(manifest))
    for f in bank.glob("expert_*.pt"):
        (legacy / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ValueError, match=r"align_corners=False \(its manifest predates.*align_corners=True"):
        _mtt(tiny, legacy)
    assert _mtt(tiny, legacy, align_corners=False).manifest["epochs"] == EXPERT_EPOCHS
    with pytest.raises(ValueError, match="other settings.*align_corners"):
        build_experts(tiny, ExpertConfig(num_experts=3, epochs=EXPERT_EPOCHS, batch_size=16, seed=0), legacy)
    build_experts(tiny, ExpertConfig(num_experts=3, epochs=EXPERT_EPOCHS, batch_size=16, seed=0,
                                     align_corners=False), legacy)  # the old way continues the old bank


def test_resume_mid_pass_equals_uninterrupted(tiny, bank, tmp_path):
    cfg = make_config("mtt", 1, "quick", expert_dir=str(bank), iterations=5, **FAST)
    distill(tiny, "mtt", cfg, tmp_path / "full", progress=False)
    distill(tiny, "mtt", cfg, tmp_path / "split", progress=False, stop_after=2)  # checkpoint where it stops, at 2
    walk = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)["method"]["extra"]["expert_pass"]
    assert walk["position"] == 2 and sorted(walk["order"]) == [0, 1, 2]  # two experts into a pass of three
    distill(tiny, "mtt", cfg, tmp_path / "split", resume=True, progress=False)  # 3 … 5 wraps into a new pass
    a, b = ImageSet.load(tmp_path / "full"), ImageSet.load(tmp_path / "split")
    assert torch.equal(a.images, b.images)
    assert a.metadata["learned_lr"] == b.metadata["learned_lr"]

    # a checkpoint from before the passes existed is refused with a message, not resumed differently
    method = _mtt(tiny, bank)
    state = method.state_dict()
    del state["extra"]["expert_pass"]
    with pytest.raises(ValueError, match="predates medistill's shuffled passes.*--force"):
        _mtt(tiny, bank).load_state_dict(state)
