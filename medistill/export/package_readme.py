"""The README.md written into a package for the receiving site (filled from the package's metadata)."""
from __future__ import annotations


def _score(evaluation: dict | None) -> str:
    if not evaluation or not evaluation.get("distilled"):
        return "No evaluation was recorded with this set (it was exported from a bare .pt file)."
    d = evaluation["distilled"]
    s, cfg = d["summary"], d["config"]
    line = (f"At the sending site this set scored accuracy {s['accuracy']['mean']:.3f} ± {s['accuracy']['std']:.3f}, "
            f"balanced accuracy {s['balanced_accuracy']['mean']:.3f} ± {s['balanced_accuracy']['std']:.3f}, "
            f"AUC {s['auc']['mean']:.3f} ± {s['auc']['std']:.3f} on the {d['test_size']} test images "
            f"({cfg['num_models']} {cfg['model']} networks × {cfg['epochs']} epochs"
            f"{', DSA augmentation' if cfg.get('augment') else ''}, lr {cfg['lr']:g}, seed {cfg['seed']}; "
            f"majority-class rate {d['majority_rate']:.3f}).")
    if evaluation.get("random"):
        r = evaluation["random"]["summary"]
        line += f" A random real subset of the same size scored accuracy {r['accuracy']['mean']:.3f} ± {r['accuracy']['std']:.3f}."
    return line


def _zca_section(meta: dict) -> str:
    """How to use the ZCA transform of a set distilled on whitened images ('' for other sets)."""
    zca = meta.get("zca")
    if not zca:
        return ""
    name = meta["files"].get("zca", "zca.npz")
    return f"""
## ZCA whitening: this set only works with `{name}`
The set was distilled on ZCA-whitened images (eps {zca['eps']}, fitted on the source training split;
fingerprint `{zca['fingerprint']}`). `train_images_normalized` holds the **whitened** tensor that networks
are trained on; `train_images_float`, `train_images` and the grid are de-whitened so that they can be looked at.
`{name}` holds `mean` (D,) and `matrix` (D, D) float32 with D = {zca['dim']} (C·H·W), `eps`, `image_shape`.
Whiten the test images exactly like the training images before scoring:

    z = np.load("{name}"); x = (pixels - mean[c]) / std[c]                    # normalise as above, (N, C, H, W)
    whitened = ((x.reshape(len(x), -1) - z["mean"]) @ z["matrix"]).reshape(x.shape)

A network trained on this set but tested on unwhitened images is tested in the wrong space and its score
means nothing; `medistill evaluate` applies `{name}` to the test split itself.
"""


def _source_words(src: dict) -> str:
    """How the README names the source data: a MedMNIST file's MD5, or an image folder's provenance."""
    prov = src.get("provenance")
    if not prov:
        return f"file MD5 `{src.get('md5')}`"
    return (f"an image folder of {prov.get('files')} files, content MD5 `{prov.get('content_md5')}`, "
            f"read at {prov.get('size')} px with {prov.get('channels')} channel(s), resize '{prov.get('resize')}'; "
            f"fingerprint `{src.get('md5')}`")


def _privacy_section(meta: dict) -> str:
    """The differential-privacy guarantee of a DP-DM set ('' for other sets)."""
    p = meta.get("privacy")
    if not p:
        return ""
    return f"""
## Differential privacy: (ε = {p['epsilon_spent']:.3g}, δ = {p['delta']:.3g})
This set was distilled with DP-DM: whether any one training image was used or not changes the probability
of this set by at most a factor e^ε (plus δ), for {p['adjacency']}. Mechanism: {p['mechanism']}; Poisson
sample rate q = {p['sample_rate']:.4g}, per-image clip C = {p['clip']:g}, noise multiplier σ = {p['noise_multiplier']:.4g}
(noise std σ·C on each class's sum), {p['iterations']} iterations; accounted with {p['accountant']}
({p['accountant_version']}), target ε {p['epsilon']:g}, δ {p['delta_rule']}. Count: {p['count']}.
Not covered: {p['not_covered']}. The source data's fingerprint is withheld. `metadata.json` → `privacy` holds it all.
"""


def package_readme(meta: dict) -> str:
    """Markdown text: what the package holds, how it is stored, how to load, verify and re-score it."""
    img = meta["images"]
    src = meta["source_dataset"]
    name, npz = src.get("name") or "unknown", meta["files"]["images"]
    shape = "×".join(map(str, img["shape_nchw"][1:]))
    ev = meta.get("evaluation") or {}
    cfg = (ev.get("distilled") or {}).get("config") or {}
    rescore = (f"medistill evaluate {{this folder}} --models {cfg.get('num_models', 5)} --epochs {cfg.get('epochs', 300)} "
               f"--seed {cfg.get('seed', 0)}") if cfg else "medistill evaluate {this folder}"
    lr = meta.get("learned_lr")
    return f"""# Distilled image set: {name}, {meta.get('method') or 'unknown method'}, {img['per_class']} images per class

This folder holds **{img['count']} synthetic images** ({shape}, {len(meta['class_names'])} classes) made by
dataset distillation ({meta.get('method') or 'unknown'}) from the training split of **{name}**
({"fingerprints withheld under differential privacy" if meta.get("privacy") else _source_words(src)}). It contains **no real image**: the `val_` and `test_` arrays are empty.
Whether any synthetic image is too close to a real training image is what `medistill audit` checks at the
sending site; ask for its report.

## Files
- `{npz}`: MedMNIST's own layout. `train_images` uint8 {'(N, H, W)' if img['shape_nchw'][1] == 1 else '(N, H, W, C)'},
  `train_labels` (N, 1); `val_*`/`test_*` empty. Any loader that reads MedMNIST's keys reads it
  (`np.load("{npz}")["train_images"]`; `medmnist.{src.get('python_class') or 'BreastMNIST'}(split="train", root="<this folder>")`
  reads `.imgs`/`.labels`, though its `len()` asserts the official split size).
  - `train_images_float`: float32, same layout, the exact de-normalised pixels `x * std + mean`.
    Distilled pixels may leave [0, 1] (here {img['float_min']:.3f} … {img['float_max']:.3f}; {100 * img['clipped_fraction']:.2f}% of pixels outside);
    `train_images` is `round(clip(float, 0, 1) * 255)`, so it loses that.
  - `train_images_normalized`: float32 (N, C, H, W), the tensor networks are trained on:
    `(float - mean[c]) / std[c]` with mean {meta['normalization']['mean']} and std {meta['normalization']['std']}
    (the source training split's per-channel statistics of pixels in [0, 1]).
- `metadata.json`: source dataset and MD5, method, IPC, seed, hyperparameters, {'learned learning rate ' + format(lr, 'g') + ', ' if lr else ''}class names
  (label i ↔ `class_names[i]`), the evaluation recorded at the sending site, software versions.
- `synthetic_grid.png`: the images, one row per class (float pixels clipped to [0, 1]).
- `MANIFEST.sha256`: SHA-256 of every other file. Check with `sha256sum -c MANIFEST.sha256`.

{_zca_section(meta)}{_privacy_section(meta)}
## Class names
{chr(10).join(f'- {i}: {c}' for i, c in enumerate(meta['class_names']))}

## Re-score it on your side
Train networks on the float images (normalised as above; {'the learned lr ' + format(lr, 'g') if lr else 'lr 0.01'}) and test them on the
public test split of {name}{' (with DSA augmentation, as at the sending site: on automatically)' if meta.get('evaluate_with_dsa') else ''}:

    {rescore}

(verifies the manifest first; needs only the official `{name}` file for its test split.)
{_score(ev)}
"""
