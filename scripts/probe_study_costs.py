"""Measure the CPU cost constants of the study's cost model (medistill/study/cost.py) on this machine.

Run at one thread (the study runs each shard at one thread):

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python scripts/probe_study_costs.py [--quick]

Times are process CPU seconds (time.process_time), not wall time, so a loaded machine inflates them
less; they are still upper bounds there. Prints one JSON object: milliseconds per image per training
step (plain and with DSA), per-step overhead, forward-only per image, and seconds per iteration of
each method at the study preset on real BreastMNIST (2 classes) and RetinaMNIST (5 classes).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch


def cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def train_costs(dataset, sizes, epochs, dsa: bool) -> dict:
    from medistill.evaluate import TrainConfig, dsa_training_augment, train_network
    from medistill.models import build_model

    out = {}
    augment = dsa_training_augment("color_crop_cutout_flip_scale_rotate", False) if dsa else None
    for n in sizes:
        images, labels = dataset.train_images[:n], dataset.train_labels[:n]
        gen = torch.Generator().manual_seed(0)
        net = build_model("convnet", dataset.channels, dataset.num_classes, dataset.image_size, generator=gen)
        seconds = cpu(lambda: train_network(net, images, labels, TrainConfig(epochs=epochs), gen, augment))
        steps = (epochs + 1) * -(-n // 256)
        out[n] = seconds / steps
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from medistill.data import load_dataset
    from medistill.evaluate import predict_proba
    from medistill.methods import ExpertConfig, build_experts, distill
    from medistill.models import build_model
    from medistill.study.cells import Budget, method_overrides
    from medistill.methods import make_config

    breast = load_dataset("breastmnist")
    retina = load_dataset("retinamnist")
    epochs = 10 if args.quick else 40
    result = {"threads": torch.get_num_threads()}

    def report(key, value):
        result[key] = value
        print(json.dumps({key: value}), flush=True)

    sizes = [2, 20, 256] if args.quick else [2, 5, 20, 50, 256]
    for name, ds in (("breastmnist", breast), ("retinamnist", retina)):
        report(f"{name}_step_seconds_plain", train_costs(ds, sizes, epochs, dsa=False))
        report(f"{name}_step_seconds_dsa", train_costs(ds, sizes, epochs, dsa=True))
    net = build_model("convnet", 3, 5, 28)
    report("forward_ms_per_image", 1000 * cpu(lambda: predict_proba(net, retina.test_images)) / len(retina.test_labels))
    budget = Budget("study")
    with tempfile.TemporaryDirectory() as tmp:
        for name, ds in (("breastmnist", breast), ("retinamnist", retina)):
            for method in ("dm", "dc", "dsa", "mtt"):
                for ipc in (1, 10):
                    overrides = method_overrides(budget, method, ipc)
                    stop = (1 if args.quick else 2) if method in ("dc", "dsa") and ipc > 1 else (4 if args.quick else 10)
                    overrides.update(checkpoint_every=10_000, log_every=1)
                    if method == "mtt":
                        bank = f"{tmp}/experts-{name}"
                        cfg = make_config("mtt", ipc, "quick", **overrides, expert_dir=bank)
                        ec = ExpertConfig(num_experts=cfg.num_experts, epochs=cfg.expert_train_epochs)
                        if ipc == 1:
                            seconds = cpu(lambda: build_experts(ds, ec, bank))
                            report(f"{name}_experts_seconds_per_image_epoch", seconds / (
                                cfg.num_experts * cfg.expert_train_epochs * len(ds.train_labels)))
                    else:
                        cfg = make_config(method, ipc, "quick", **overrides)
                    folder = f"{tmp}/{name}-{method}-{ipc}"
                    seconds = cpu(lambda: distill(ds, method, cfg, folder, progress=False, stop_after=stop))
                    report(f"{name}_{method}_ipc{ipc}_seconds_per_iteration", seconds / stop)
        from medistill.selection import embedding_features
        seconds = cpu(lambda: embedding_features(retina, 0, embed_epochs=2))
        report("embedding_seconds_per_image_pass", seconds / (3 * len(retina.train_labels)))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
