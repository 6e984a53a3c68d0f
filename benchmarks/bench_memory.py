"""Peak memory of loading a MedMNIST file and one DM iteration, at 28/64/128/224 px, each in its own process.

    MEDISTILL_DATA= OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_memory.py \
        [--sizes 28 64 128 224] [--counts 1500 150 350] [--root /tmp/medistill-bench-memory]

Data: generated PathMNIST-layout files (3 channels, 9 classes; :mod:`benchmarks.medmnist_layout`) with
``--counts`` train/val/test images, written once under ``--root`` as ``pathmnist[_<size>].npz``.

Each (size, storage) runs in a fresh Python process, one thread, CPU: import medistill, load the file
(``verify_md5=False``), build DM (IPC 1, ``batch_real`` 16: 9 × 16 real images a step, small enough
for one CPU core at 224 px) and run one iteration. Reported: the process's peak RSS
(``VmHWM``) after the imports, after loading and after the DM step, the bytes the dataset's
images hold, and seconds (wall clock: on a busy machine they say little). Storage:

* ``uint8``: medistill's loader: the file's uint8 arrays, normalised per batch;
* ``float32``: the loader before this change, re-enacted here: every split converted to float32
  [0, 1] (``to_float_nchw``), statistics, then normalised into new float32 tensors, which the dataset
  holds (and which DM moved whole to its device).

Prints one JSON line per process and a Markdown table at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

NAME = "pathmnist"
REPO = Path(__file__).resolve().parents[1]


def _peak_mib() -> float:
    """Peak resident memory of this process so far (VmHWM, Linux). Not ru_maxrss: Linux carries that over
    from the parent through fork and exec, so a child would report the generating parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover - not Linux


def _float_dataset(size: int, root: str):
    """The pre-change loader: float32 copies of every split, normalised into new tensors."""
    import numpy as np
    import torch

    from medistill.data import ImageDataset, locate
    from medistill.data.file_io import read_npz
    from medistill.data.normalize import channel_stats, normalize, to_float_nchw

    path = locate(NAME, size, root)
    arrays = read_npz(path)
    floats = {s: to_float_nchw(arrays[f"{s}_images"]) for s in ("train", "val", "test")}
    labels = {s: torch.from_numpy(arrays[f"{s}_labels"].reshape(-1).astype(np.int64)) for s in ("train", "val", "test")}
    mean, std = channel_stats(floats["train"])
    normalised = {s: normalize(floats[s], mean, std) for s in ("train", "val", "test")}
    del floats, arrays
    return ImageDataset(name=NAME, train_images=normalised["train"], train_labels=labels["train"],
                        val_images=normalised["val"], val_labels=labels["val"], test_images=normalised["test"],
                        test_labels=labels["test"], mean=mean, std=std, class_names=[str(i) for i in range(9)],
                        md5="float32-bench")


def child(size: int, root: str, storage: str, batch_real: int) -> dict:
    import medmnist  # noqa: F401  (the loader reads medmnist.INFO: its import is part of the baseline)
    import torch

    torch.set_num_threads(1)
    from medistill.data import load_medmnist
    from medistill.methods import make_config
    from medistill.methods.dm import DM

    after_import = _peak_mib()
    started = time.perf_counter()
    if storage == "uint8":
        dataset = load_medmnist(NAME, size=size, root=root, verify_md5=False)
    else:
        dataset = _float_dataset(size, root)
    load_s = time.perf_counter() - started
    after_load = _peak_mib()
    method = DM(dataset, make_config("dm", 1, "quick", batch_real=batch_real))
    started = time.perf_counter()
    loss = float(method.step())
    step_s = time.perf_counter() - started
    return {"size": size, "storage": storage, "images": sum(dataset.split_sizes.values()),
            "image_shape": list(dataset.image_shape), "images_mib": round(dataset.memory_bytes / 2**20, 1),
            "peak_after_import_mib": round(after_import), "peak_after_load_mib": round(after_load),
            "peak_after_dm_step_mib": round(_peak_mib()), "load_s": round(load_s, 2), "dm_step_s": round(step_s, 2),
            "batch_real": batch_real, "loss_finite": bool(loss == loss and abs(loss) != float("inf"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 64, 128, 224])
    parser.add_argument("--counts", type=int, nargs=3, default=[1500, 150, 350], metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--root", default="/tmp/medistill-bench-memory")
    parser.add_argument("--storage", nargs="+", default=["uint8", "float32"], choices=["uint8", "float32"])
    parser.add_argument("--batch-real", type=int, default=16)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.size, args.root, args.storage[0], args.batch_real)))
        return 0

    sys.path.insert(0, str(REPO))
    from benchmarks.medmnist_layout import file_name, write_medmnist_layout

    marker = Path(args.root) / "counts.json"
    same = marker.exists() and json.loads(marker.read_text()) == list(args.counts)
    for size in args.sizes:
        if not (same and (Path(args.root) / file_name(NAME, size)).exists()):
            write_medmnist_layout(args.root, NAME, size, tuple(args.counts), seed=size)
    Path(args.root).mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(list(args.counts)))
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for size in args.sizes:
        for storage in args.storage:
            out = subprocess.run([sys.executable, __file__, "--child", "--size", str(size), "--root", args.root,
                                  "--storage", storage, "--batch-real", str(args.batch_real)],
                                 capture_output=True, text=True, env=env, check=False)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                raise SystemExit(f"size {size} {storage}: exit {out.returncode}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print("\n| size | storage | images in memory | peak RSS after import | after load | after 1 DM iteration | load s | DM step s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        c, h, w = r["image_shape"]
        print(f"| {c}×{h}×{w} | {r['storage']} | {r['images_mib']:,} MiB | {r['peak_after_import_mib']:,} MiB | "
              f"{r['peak_after_load_mib']:,} MiB | {r['peak_after_dm_step_mib']:,} MiB | {r['load_s']} | {r['dm_step_s']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
