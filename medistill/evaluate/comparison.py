"""Does a distilled set beat random real images? The one rule, stated so that it can be checked.

The random baseline is R random real subsets at the same IPC, each scored by N networks
(:func:`medistill.selection.random_baseline`). A set "beats random" on a metric only when its mean
over networks exceeds the mean over subsets by more than the subsets' spread (their population
standard deviation): a gap smaller than the difference between two random draws of real images is
not evidence. With a single subset there is no spread, and no verdict.
"""
from __future__ import annotations

COMPARED_METRICS = ("balanced_accuracy", "auc")
RULE = ("beats random on a metric when distilled mean > random mean + random spread, where the random mean "
        "and spread (population std) are over the R random subsets' mean scores; R ≥ 2 is needed for a verdict")


def compare_with_random(distilled_summary: dict, random_baseline: dict, metrics=COMPARED_METRICS) -> dict:
    """{metric: {"distilled", "random_mean", "random_spread", "margin", "verdict"}, "overall", "rule"}.

    verdict: "beats random", "does not beat random" or "undecided (one random subset)". overall:
    "beats random" when every compared metric beats it, "does not beat random" when any does not,
    else undecided.
    """
    subsets = random_baseline["subsets"]
    out: dict = {"rule": RULE}
    verdicts = []
    for m in metrics:
        d = distilled_summary[m]["mean"]
        r_mean, r_spread = subsets[m]["mean"], subsets[m]["std"]
        n = len(subsets[m]["values"])
        if n < 2:
            verdict = "undecided (one random subset)"
        elif d > r_mean + r_spread:
            verdict = "beats random"
        else:
            verdict = "does not beat random"
        verdicts.append(verdict)
        out[m] = {"distilled": d, "random_mean": r_mean, "random_spread": r_spread, "subsets": n,
                  "margin": d - (r_mean + r_spread), "verdict": verdict}
    if all(v == "beats random" for v in verdicts):
        out["overall"] = "beats random"
    elif any(v == "does not beat random" for v in verdicts):
        out["overall"] = "does not beat random"
    else:
        out["overall"] = "undecided (one random subset)"
    return out
