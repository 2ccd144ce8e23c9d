"""Figures (matplotlib, Agg backend, PNG): radioactivity curves, ROC, the frontier."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def _save(fig, path) -> None:
    from antidistill.watermark.errors import atomic_write

    fig.tight_layout()
    with atomic_write(Path(path), "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def radioactivity_curves(curves: pd.DataFrame, path, alpha: float, title: str = "Radioactivity audit") -> None:
    """`curves`: columns label, kind ('suspect' | 'null'), n_scored, log10_p, optional `panel` (one
    subplot per panel value). Suspects are drawn bold and named; nulls thin and grey, named once."""
    if "panel" not in curves:
        curves = curves.assign(panel="")
    panels = list(dict.fromkeys(curves["panel"]))
    ncol = min(len(panels), 3)
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.6 * nrow), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        g = curves[curves["panel"] == panel]
        named_null = False
        for label, c in g.groupby("label", sort=False):
            if (c["kind"] == "suspect").all():
                ax.plot(c["n_scored"], c["log10_p"], lw=2, label=label)
            elif (c["kind"] == "control").all():
                ax.plot(c["n_scored"], c["log10_p"], lw=1.4, ls="--", color="k", label=label)
            else:
                ax.plot(c["n_scored"], c["log10_p"], lw=0.8, color="grey", alpha=0.6,
                        label=None if named_null else "wrong keys (null)")
                named_null = True
        ax.axhline(math.log10(alpha), color="r", lw=0.8, ls=":", label=f"alpha = {alpha:g}")
        ax.set_xscale("log")
        ax.set_xlabel("tuples scored (deduplicated)")
        ax.set_ylabel("log10 p")
        ax.set_title(panel or title, fontsize=9)
        ax.legend(fontsize=7, loc="lower left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if panels != [""]:
        fig.suptitle(title)
    _save(fig, path)


def roc_figure(roc: pd.DataFrame, path, title: str = "Detection on teacher outputs (ROC)") -> None:
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    for label, g in roc.groupby("protection", sort=False):
        ax.plot(g["fpr"], g["tpr"], drawstyle="steps-post", label=label)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.6, ls=":")
    ax.set_xlabel("false-positive rate (unprotected outputs)")
    ax.set_ylabel("true-positive rate (protected outputs)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path)


def frontier_figure(points: pd.DataFrame, path, title: str = "Frontier: teacher vs student accuracy") -> None:
    """`points`: protection, family, teacher_acc/lo/hi, student_acc/lo/hi, short_note. Families with
    several points (a sweep) are drawn as one curve in teacher-accuracy order; others as points."""
    fig, ax = plt.subplots(figsize=(8.0, 5.2))
    if "family" not in points:
        points = points.assign(family=points["protection"])
    for family, g in points.groupby("family", sort=False):
        g = g.sort_values("teacher_acc")
        xerr = [g["teacher_acc"] - g["teacher_lo"], g["teacher_hi"] - g["teacher_acc"]]
        yerr = [g["student_acc"] - g["student_lo"], g["student_hi"] - g["student_acc"]]
        label = family if len(g) > 1 else g["protection"].iloc[0]
        ax.errorbar(g["teacher_acc"], g["student_acc"], xerr=xerr, yerr=yerr, fmt="o-" if len(g) > 1 else "o",
                    capsize=3, lw=2 if family == "temperature" else 1.2, label=label)
        for _, r in g.iterrows():
            text = r.get("value") if len(g) > 1 and r.get("value") not in (None, "") else ""
            text = " ".join(str(t) for t in (text, r.get("short_note", "")) if t and t == t)
            if text:
                ax.annotate(text, (r["teacher_acc"], r["student_acc"]), fontsize=7, xytext=(5, -10),
                            textcoords="offset points")
    ax.set_xlabel("teacher accuracy under the protection (legitimate user)")
    ax.set_ylabel("student accuracy after distillation")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.margins(x=0.15, y=0.15)
    _save(fig, path)
