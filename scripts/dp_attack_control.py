"""Controls for the DP study's membership attack (RESULTS.md, "Differentially private DM"): is an attack AUC
above 0.5 on a DP-DM set membership, or a difference between the training and test splits?

1. ``noise``: the audit's attack on a data-independent set (standard-normal images, the DP-DM initialisation,
   the labels of ``scripts/dp_study.py``'s ε = 1 seed-0 set) for each dataset. Its AUC is what the attack
   gives when the set knows nothing.
2. ``same-split``: the brain MRI folder with its ``Training/`` folder only (``--split-dirs train=Training``):
   20 % of each class held out of it as the non-members, so members and non-members come from one
   distribution. DP-DM at ε = 1 and ε = ∞ (seed 0, the study's settings), then the same audit.

    python scripts/dp_attack_control.py            # results/dp/controls/attack_control.json (~15 CPU-min)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dp_study  # noqa: E402  (the study's datasets, runs folder and audit settings)

from medistill.atomic_io import atomic_write_text  # noqa: E402
from medistill.audit import run_audit  # noqa: E402
from medistill.data import ImageSet, load_dataset  # noqa: E402
from medistill.study.tasks import folder_source_path  # noqa: E402

OUT = Path("results/dp/controls/attack_control.json")


def _study_defaults():
    """dp_study's ``run`` settings at their defaults: the audit and runs folder its cells use."""
    parser = argparse.ArgumentParser()
    dp_study.add_run_arguments(parser)
    return parser.parse_args([])


STUDY = _study_defaults()
RUNS = Path(STUDY.runs)


def _attack(image_set: ImageSet, dataset) -> dict:
    config = dp_study.audit_config(STUDY, seed=0)
    mi = run_audit(image_set, dataset, config, progress=False).summary["membership_inference"]
    return {"attack_auc": mi["attack_auc"], "targeted_attack_auc": mi["targeted_attack_auc"]}


def main() -> int:
    torch.set_num_threads(1)
    os.environ.setdefault("TQDM_MININTERVAL", "30")
    result = json.loads(OUT.read_text()) if OUT.exists() else {"noise": {}, "same_split": {}}
    for name in dp_study.DATASETS:
        if name in result["noise"]:
            continue
        study_set = RUNS / f"{name}-dpdm-eps1-ipc10-s0" / "synthetic_set.pt"
        if not study_set.exists():
            print(f"skip noise control on {name}: run `python scripts/dp_study.py run --datasets {name} "
                  "--kinds dpdm --epsilons 1 --seeds 0` first", file=sys.stderr)
            continue
        base = ImageSet.load(study_set)
        noise = dataclasses.replace(base, images=torch.randn(base.images.shape, generator=torch.Generator().manual_seed(0)))
        result["noise"][name] = _attack(noise, dp_study._load(name))
        print("noise", name, result["noise"][name], flush=True)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(OUT, json.dumps(result, indent=1))
    brain = folder_source_path("brain")
    folder = ["--dataset", str(brain), "--size", "28", "--split-dirs", "train=Training", "--test-fraction", "0.2"]
    for eps in ("1", "inf"):
        if eps in result["same_split"]:
            continue
        run = RUNS / f"control-brain-training-only-dpdm-eps{eps}-s0"
        if not (run / "synthetic_set.pt").exists():
            subprocess.run(dp_study.distill_command(folder, eps, 0, STUDY, run), check=True)
        dataset = load_dataset(str(brain), size=28, split_dirs="train=Training", test_fraction=0.2)
        result["same_split"][eps] = {**_attack(ImageSet.load(run / "synthetic_set.pt"), dataset),
                                     "members": len(dataset.train_labels), "non_members": len(dataset.test_labels)}
        print("same split", eps, result["same_split"][eps], flush=True)
        atomic_write_text(OUT, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
