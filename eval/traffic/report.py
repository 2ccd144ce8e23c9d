"""results/NAME/ of `antidistill traffic run`: report.md, CSVs, matplotlib figures (all measured)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from antidistill.watermark.errors import atomic_write

from .evasion import KNOB_LABELS
from .metrics import ALL
from .null_split import markdown as null_markdown

DESCRIBE = {
    "cot": "CoT-elicitation classifier (word + char n-gram TF-IDF, logistic regression; held-out wrapper families)",
    "templates": "template clusters (MinHash LSH + exact Jaccard, across accounts)",
    "coordination": "coordination graph (shared payment / network, co-action in 60 s buckets)",
    "shift": "MMD window test against legitimate reference traffic (TF-IDF + SVD embedding)",
    "combined": "combined: the detectors' conformal ranks, smallest first (min-p, ties broken by the next), "
                "calibrated as a statistic of its own on the calibration accounts (leave-one-out, exact)",
}


def write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_write(path) as fh:
        df.to_csv(fh, index=False, float_format="%.6g")


def _fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _md(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.0f}" if v.is_integer() and abs(v) >= 1 else f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def write_report(out: Path, cfg, t: dict, meta: dict) -> None:
    """Every table as CSV, the figures and report.md; `cfg` a TrafficConfig."""
    for name in ("detection", "collateral", "roc", "shift_windows", "campaigns", "thresholds", "ttd", "evasion",
                 "pivot", "null_split"):
        write_csv(t[name], out / f"{name}.csv")
    _figures(out, cfg, t, meta)
    with atomic_write(out / "report.md") as fh:
        fh.write("\n".join(_detection_section(cfg, t, meta) + _later_sections(cfg, t, meta)) + "\n")


def _figures(out: Path, cfg, t: dict, meta: dict) -> None:
    """ROC per detector, an evasion curve per knob, time to detection per campaign."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roc = t["roc"]
    for d in ALL:
        r = roc[roc["detector"] == d]
        fig, ax = plt.subplots(figsize=(4.2, 3.4))
        ax.step(np.maximum(r["fpr"], 1e-5), r["tpr"], where="post")
        for a in cfg.alphas:
            ax.axvline(a, color="grey", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlim(1e-5, 1)
        ax.set_xlabel("FPR among legitimate evaluation accounts (log; 0 drawn at 1e-5)")
        ax.set_ylabel("TPR (campaign accounts)")
        ax.set_title(f"{d}: AUC {r['auc'].iloc[0]:.3f}", fontsize=9)
        _fig(fig, out / f"roc_{d}.png")
    ev = t["evasion"]
    for knob, label in KNOB_LABELS.items():
        e = ev[ev["knob"] == knob]
        fig, ax = plt.subplots(figsize=(4.6, 3.4))
        for d in ALL:
            g = e[e["detector"] == d]
            ax.plot(g["value"], g["tpr"], marker="o", label=d, lw=2.2 if d == "combined" else 1)
        if knob in ("jitter_s", "accounts_per_campaign", "requests_per_account"):
            ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(label)
        ax.set_ylabel(f"TPR at FPR {meta['alpha_curves']:g}")
        ax.legend(fontsize=7)
        _fig(fig, out / f"evasion_{knob}.png")
    ttd = t["ttd"]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    piv = ttd.pivot(index="campaign_id", columns="detector", values="hours")[list(ALL)]
    piv.plot.bar(ax=ax, width=0.8)
    ax.set_ylabel("hours to first flag (checkpoint grid)")
    ax.legend(fontsize=7)
    _fig(fig, out / "time_to_detect.png")


def _detection_section(cfg, t: dict, meta: dict) -> list[str]:
    """The run's sizes, detection at fixed FPR, the detectors, ROC and the MMD window test."""
    det, roc = t["detection"], t["roc"]
    sizes = meta["sizes"]
    lines = [f"# Traffic-side detection of distillation campaigns ({cfg.name})", "",
             f"Simulated evaluation log: {sizes['evaluation']['requests']:,} requests from "
             f"{sizes['evaluation']['accounts']:,} accounts ({cfg.sim.n_campaigns} campaigns of "
             f"{cfg.sim.accounts_per_campaign} accounts plus banned-account replacements, "
             f"{int(det['legit_accounts'].iloc[0]):,} legitimate accounts), over {cfg.sim.days:g} days. "
             f"Thresholds from {sizes['calibration']['accounts']:,} disjoint legitimate calibration accounts "
             f"({sizes['calibration']['requests']:,} requests); models from {sizes['train']['accounts']:,} "
             f"legitimate training accounts. Seed {cfg.seed}; {meta['wall_seconds']:.0f} s on one thread up to "
             f"this report (total and stages in run.json"
             + (f"; taken from the cache, made by an earlier run with the same settings: {', '.join(meta['reused_from_cache'])}"
                if meta.get("reused_from_cache") else "") + "). Campaigns wrap their prompts in CoT-elicitation wrappers of the "
             "*held-out* families only.", "",
             "## Detection at fixed false-positive rate", "",
             "TPR = share of campaign accounts flagged; FPR = share of the evaluation legitimate accounts flagged "
             "(95% Clopper-Pearson interval). An account is flagged when its conformal p-value "
             "(1 + #{calibration scores >= its score}) / (n + 1) is <= alpha, calibration and evaluated accounts "
             "scored in one population (eval/traffic/calibrate.py; exact under exchangeability). "
             f"Resolution: with n = {int(det['calib_accounts'].iloc[0])} calibration accounts the smallest alpha "
             f"that can be resolved is 1/(n + 1) = {det['resolution'].iloc[0]:.1e}; smaller alphas are refused.", "",
             _md(det[["detector", "alpha", "tpr", "campaign_recall", "mean_campaign_tpr", "fpr", "fpr_lo", "fpr_hi",
                      "false_positives", "legit_accounts", "binom_bound", "exact_bound"]]), "",
             "binom_bound, exact_bound: 99.9% upper bounds on false_positives, Binomial(N, alpha) and the exact "
             "law under exchangeability (negative hypergeometric; see the all-legitimate split below).", "",
             "Detectors: " + "; ".join(f"**{k}**: {v}" for k, v in DESCRIBE.items()) + ".", "",
             "ROC per detector over the evaluation accounts: " + ", ".join(f"`roc_{d}.png`" for d in ALL)
             + " (`roc.csv`; AUC " + ", ".join(f"{d} {roc[roc['detector'] == d]['auc'].iloc[0]:.3f}" for d in ALL)
             + ").", "",
             "The MMD window test read as a test rather than a score: accounts with enough requests to test "
             f"(>= {cfg.detectors.mmd_min_n}), and those whose Monte-Carlo permutation p-value "
             f"(b + 1) / (m + 1), m = {cfg.detectors.mmd_perm} permutations, is <= 0.01 (`shift_windows.csv`; "
             "valid in the permutation sense for any m; resolution 1 / (m + 1)):", "", _md(t["shift_windows"]), ""]
    return lines


def _later_sections(cfg, t: dict, meta: dict) -> list[str]:
    """The all-legitimate split, collateral damage, candidate campaigns, time to detection, evasion,
    the pivot and throughput."""
    bench = Path("results/bench/traffic.md")
    lines = ["## False-positive rate on an all-legitimate split", "",
             f"Per seed, a simulated log of {int(cfg.null_split.accounts):,} legitimate accounts and no "
             "campaign, split in two at random by account: one half is the reference (a quarter of its accounts "
             "train the models, the rest calibrate, as `traffic detect --reference` does), the other half is "
             "evaluated, so every flag is a false positive (`null_split.csv`, eval/traffic/null_split.py). Beside "
             "each count, two 99.9% upper bounds: Binomial(N, alpha), and the exact law of the count under "
             "exchangeability (negative hypergeometric: all N accounts are compared with one calibration set, so "
             "their flags share its luck and vary more than a binomial; a valid procedure exceeds the binomial "
             "bound in about 1-2% of cells at these sizes).", "", null_markdown(t["null_split"]), "",
             f"## Collateral damage at FPR {meta['alpha_curves']:g}", "",
             "Legitimate accounts flagged, per archetype and detector (heavy single-topic users, classroom accounts "
             "sharing a school network and homework prompts, API integrators with templated prompts are the hard "
             "cases the simulator plants):", "", _md(t["collateral"]), "",
             "## Candidate campaigns", "",
             "Coordination communities (Louvain) holding at least one account flagged by the combined score, with "
             "the campaign most of their accounts belong to (-1: legitimate):", "",
             _md(t["campaigns"].head(20)), "",
             "## Time to detection", "",
             f"Detectors rerun on the log's prefixes at {', '.join(f'{h:g}' for h in cfg.ttd_hours)} hours and at "
             "its end, each prefix scored together with the calibration accounts' whole week (the legitimate FPR "
             "at a prefix is not measured here; the conformal guarantee covers whole-period logs). Hours from a campaign's first request to the first checkpoint at which one "
             "of its accounts is flagged (an upper bound: the grid is coarse), and the campaign's requests sent by "
             "then; empty = not flagged by the end (`ttd.csv`, `time_to_detect.png`).", "",
             _md(t["ttd"].pivot(index="campaign_id", columns="detector", values="hours")[list(ALL)].reset_index()), "",
             _md(t["ttd"].pivot(index="campaign_id", columns="detector", values="requests")[list(ALL)].reset_index()),
             "",
             "## Evasion curves", "",
             f"Each knob swept alone from the preset's campaign settings, campaigns re-simulated per level and mixed "
             f"into {cfg.evasion.background_accounts} evaluation legitimate accounts, flagged at FPR "
             f"{meta['alpha_curves']:g} (`evasion.csv`, `evasion_*.png`). Account TPR per detector:", ""]
    for knob, label in KNOB_LABELS.items():
        e = t["evasion"][t["evasion"]["knob"] == knob].pivot(index="value", columns="detector", values="tpr")
        lines += [f"**{label}**", "", _md(e[list(ALL)].reset_index()), ""]
    lines += ["## Pivot to a new model", "",
              "Share of requests on the newly released model in the first and second day after its release "
              "(recorded by the simulator; no detector uses it yet):", "", _md(t["pivot"]), ""]
    lines += ["## Throughput", ""]
    if bench.exists():
        lines += [f"From `{bench}` (python -m antidistill.eval.bench.traffic):", "",
                  bench.read_text(encoding="utf-8").split("## Figures", 1)[-1].split("## False-positive rate", 1)[0].strip(), ""]
    else:
        lines += ["Run `python -m antidistill.eval.bench.traffic` for the streaming-feature and graph timings.", ""]
    return lines
