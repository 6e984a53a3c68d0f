"""Print the privacy-audit table (Markdown) from results/audit/*.json, for RESULTS.md.

Per set: median nearest-real-image pixel distance of the synthetic images over the real data's own
median leave-one-out NN distance (ratio; 0 = copies of real images), images flagged (pixel L2 /
embedding / SSIM), and the membership attack AUC (all training images; targeted: those nearest to a
synthetic image). Usage: python scripts/audit_table.py [results/audit]
"""
import json
import sys
from pathlib import Path


def row(path: Path) -> str:
    r = json.loads(path.read_text())
    s, sp, mi = r["set"], r["spaces"], r.get("membership_inference") or {}
    auc = f"{mi['attack_auc']:.3f} / {mi['targeted_attack_auc']:.3f}" if mi else "–"
    px = sp["pixel_l2"]
    return (f"| {r.get('name', path.stem)} | {s['method']} | {s['ipc']} | {s['images']} | "
            f"{px['synthetic_nn_median']:.3f} / {px['real_nn_median']:.3f} = {px['median_ratio']:.3f} | "
            f"{px['synthetic_nn_min']:.3f} / {sp['ssim']['synthetic_nn_max']:.3f} | "
            f"{sp['embedding_l2']['median_ratio']:.3f} | {r['flagged']} / {sp['embedding_l2']['flagged']} / {sp['ssim']['flagged']} | {auc} |")


def main(folder: str = "results/audit") -> int:
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        print(f"no audit results in {folder}: run scripts/run_audit_results.sh", file=sys.stderr)
        return 1
    print("| set | method | IPC | images | pixel NN median: synthetic→real / real→real = ratio | closest: pixel L2 min / SSIM max | embedding ratio "
          "| flagged (pixel / embedding / SSIM) | attack AUC (all / targeted) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in files:
        print(row(path))
    thresholds = {json.loads(p.read_text())["set"]["dataset"]: json.loads(p.read_text())["spaces"] for p in files}
    print()
    for name, sp in sorted(thresholds.items()):
        print(f"{name}: flag thresholds pixel L2 < {sp['pixel_l2']['threshold']:.3f}, SSIM > {sp['ssim']['threshold']:.4f} "
              f"(real→real NN pixel L2 quantiles 1/5/25/50 %: "
              + " / ".join(f"{v:.3f}" for v in sp["pixel_l2"]["real_nn_quantiles"].values()) + ")")
    print()
    print("Flag: nearest real training image closer than the 1st percentile of real-to-real leave-one-out NN "
          "distances (or a copy up to uint8 rounding). Attack: loss threshold on 2 ConvNets × 100 epochs trained "
          "on the set; members = real train split, non-members = test split; 0.5 = no leak.")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
