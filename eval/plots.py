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
    """`curves`: columns label, kind ('suspect' | 'null'), n_scored, log10_p (one line per label)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, g in curves.groupby("label", sort=False):
        null = (g["kind"] == "null").all()
        ax.plot(g["n_scored"], g["log10_p"], ls="--" if null else "-", lw=1 if null else 1.8,
                alpha=0.6 if null else 1.0, label=label)
    ax.axhline(math.log10(alpha), color="k", lw=0.8, ls=":", label=f"alpha = {alpha:g}")
    ax.set_xscale("log")
    ax.set_xlabel("tuples scored (deduplicated)")
    ax.set_ylabel("log10 p")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower left")
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
    """`points`: protection, teacher_acc, teacher_lo, teacher_hi, student_acc, student_lo, student_hi, note."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for _, r in points.iterrows():
        ax.errorbar(r["teacher_acc"], r["student_acc"],
                    xerr=[[r["teacher_acc"] - r["teacher_lo"]], [r["teacher_hi"] - r["teacher_acc"]]],
                    yerr=[[r["student_acc"] - r["student_lo"]], [r["student_hi"] - r["student_acc"]]],
                    fmt="o", capsize=3, label=r["protection"])
        ax.annotate(r.get("note", ""), (r["teacher_acc"], r["student_acc"]), fontsize=6,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("teacher accuracy under the protection (legitimate user)")
    ax.set_ylabel("student accuracy after distillation")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    _save(fig, path)
