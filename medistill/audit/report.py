"""The audit report a data officer reads: audit.md (+ PNG pictures) and audit.json in one folder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic_io import atomic_write_text
from .privacy_audit import AuditResult

MAX_PAIR_ROWS = 24


def _tile(image) -> np.ndarray:
    """(C, H, W) tensor in [0, 1] → (H, W) or (H, W, 3) numpy for imshow."""
    x = image.permute(1, 2, 0).numpy()
    return x[..., 0] if x.shape[-1] == 1 else x


def write_pairs_png(path: Path, result: AuditResult, indices: list[int], title: str) -> Path:
    """One row per synthetic image: the image, then its nearest real image by pixel L2, embedding L2, SSIM."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    syn, real = result.arrays["synthetic_pixels"], result.arrays["real_pixels"]
    rows = indices[:MAX_PAIR_ROWS]
    fig, axes = plt.subplots(len(rows), 4, figsize=(7.2, 1.9 * len(rows) + 0.6), squeeze=False)
    for r, j in enumerate(rows):
        row = result.per_image[j]
        cells = [(syn[j], f"synthetic #{j} (class {row['label']})"),
                 (real[row["pixel_l2"]["real_indices"][0]], f"pixel L2 {row['pixel_l2']['distances'][0]:.3f}\nreal #{row['pixel_l2']['real_indices'][0]}"),
                 (real[row["embedding_l2"]["real_indices"][0]], f"embed L2 {row['embedding_l2']['distances'][0]:.2f}\nreal #{row['embedding_l2']['real_indices'][0]}"),
                 (real[row["ssim"]["real_indices"][0]], f"SSIM {row['ssim']['values'][0]:.3f}\nreal #{row['ssim']['real_indices'][0]}")]
        for c, (img, label) in enumerate(cells):
            ax = axes[r][c]
            ax.imshow(_tile(img), cmap="gray", vmin=0, vmax=1)
            ax.set_title(label, fontsize=7, color="red" if c == 0 and any(row["flagged"].values()) else "black")
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_histograms_png(path: Path, result: AuditResult) -> Path:
    """Per space: real-to-real NN distances vs synthetic-to-real NN distances, threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, spaces = result.arrays, result.summary["spaces"]
    panels = [("pixel_l2", "pixel L2 (lower = closer)"), ("embedding_l2", "embedding L2 (lower = closer)"),
              ("ssim", "SSIM (higher = closer)")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, (key, label) in zip(axes, panels):
        short = key.split("_")[0]
        ref, syn = a[f"{short}_ref"], a[f"{short}_syn"]
        bins = np.histogram_bin_edges(np.concatenate([ref, syn]), bins=40)
        ax.hist(ref, bins=bins, density=True, alpha=0.6, label=f"real→nearest other real ({len(ref)})")
        ax.hist(syn, bins=bins, density=True, alpha=0.6, label=f"synthetic→nearest real ({len(syn)})")
        ax.axvline(spaces[key]["threshold"], color="red", linestyle="--", label="flag threshold")
        ax.set_xlabel(label)
        ax.legend(fontsize=7)
    fig.suptitle("Nearest-neighbour distances: synthetic set vs the real data's own spacing", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _markdown(result: AuditResult, pictures: dict[str, str]) -> str:
    s = result.summary
    st, px, em, ss = s["set"], s["spaces"]["pixel_l2"], s["spaces"]["embedding_l2"], s["spaces"]["ssim"]
    mi = s["membership_inference"]
    lines = [f"# Privacy audit: {st['method']} · {st['dataset']} · IPC {st['ipc']} ({st['images']} images)", "",
             f"Compared with the {s['real_train_images']} real training images of {st['dataset']} (MD5 `{st['dataset_md5']}`).", "",
             f"**Flagged (pixel space): {s['flagged']} of {st['images']}**"
             + (f" — synthetic image(s) {', '.join(map(str, s['flagged_indices']))}" if s["flagged"] else "") + ".",
             f"Rule: {s['flag_rule']}.", "",
             "| space | synthetic→real NN, median | real→real NN, median | ratio | threshold | flagged |",
             "|---|---|---|---|---|---|",
             f"| pixel L2 | {px['synthetic_nn_median']:.3f} | {px['real_nn_median']:.3f} | {px['median_ratio']:.3f} | {px['threshold']:.3f} | {px['flagged']} |",
             f"| embedding L2 | {em['synthetic_nn_median']:.2f} | {em['real_nn_median']:.2f} | {em['median_ratio']:.3f} | {em['threshold']:.2f} | {em['flagged']} |",
             f"| SSIM (best) | {ss['synthetic_nn_median']:.3f} | {ss['real_nn_median']:.3f} | – | {ss['threshold']:.3f} | {ss['flagged']} |",
             "",
             f"Real-to-real: leave-one-out over {px['reference_queries']} real images; exact duplicates inside the real "
             f"training split: {px['real_exact_duplicates']}. A ratio near 0 means the synthetic images sit on real ones; "
             "near or above 1 means they are no closer to a real image than real images are to each other.", ""]
    if s.get("privacy"):
        from ..privacy import privacy_line

        lines += ["## Formal guarantee (DP-DM)", "", privacy_line(s["privacy"]) + ".",
                  "The checks above and below are empirical; the guarantee bounds what any attack can learn about one "
                  "training image. This report itself shows real training images: it stays at the sending site.", ""]
    if mi:
        lines += ["## Membership inference (loss-threshold attack)", "",
                  f"{mi['config']['num_models']} ConvNets × {mi['config']['epochs']} epochs trained on the set (lr {mi['config']['lr']:g}, "
                  f"no augmentation, seed {mi['config']['seed']}); members = {mi['members']} real training images, "
                  f"non-members = {mi['nonmembers']} real test images.", "",
                  f"- attack AUC (all members): **{mi['attack_auc']:.3f}** (0.5 = no leak)",
                  f"- targeted AUC (the {mi['targeted_members']} real images nearest to a synthetic image): {mi['targeted_attack_auc']:.3f}",
                  f"- median loss: members {mi['member_loss_median']:.3f}, non-members {mi['nonmember_loss_median']:.3f}", ""]
    lines += ["## Pictures", "", f"![distances]({pictures['histograms']})", ""]
    if "flagged" in pictures:
        lines += ["Flagged synthetic images next to their nearest real training images:", "", f"![flagged]({pictures['flagged']})", ""]
    lines += ["The closest synthetic images (by pixel L2) next to their nearest real training images:", "",
              f"![closest]({pictures['closest']})", "", "Numbers for every image: `audit.json`.", ""]
    return "\n".join(lines)


def write_report(out, result: AuditResult) -> Path:
    """Write audit.json, audit.md, nn_distances.png, closest_pairs.png (+ flagged_pairs.png) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pictures = {"histograms": write_histograms_png(out / "nn_distances.png", result).name}
    order = np.argsort(result.arrays["pixel_syn"], kind="stable").tolist()
    pictures["closest"] = write_pairs_png(out / "closest_pairs.png", result, order, "closest synthetic images").name
    flagged = sorted({i for space in result.summary["spaces"].values() for i in space["flagged_indices"]})
    if flagged:
        pictures["flagged"] = write_pairs_png(out / "flagged_pairs.png", result, flagged, "flagged synthetic images").name
    atomic_write_text(out / "audit.json", json.dumps({**result.summary, "per_image": result.per_image}, indent=1))
    atomic_write_text(out / "audit.md", _markdown(result, pictures))
    return out / "audit.md"
