"""Capability transfer (researchers): how much does a protection cut what a student learns?

Students are graded on the held-out test split (greedy, exact match). Per student and skill:
accuracy with a bootstrap 95% CI; DE = acc / acc_raw (distillation effectiveness); transfer ratio
= (acc - acc_base) / (acc_raw - acc_base), where `base` is the student before distillation and
`raw` the one distilled on unprotected outputs; an exact paired test against raw. The bootstrap
resamples test items jointly for all students (they answer the same items), so ratios get paired
intervals.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .stats import paired_exact_test


def grade_items(model, tokenizer, examples, *, batch_size: int = 100, max_new_tokens: int = 128) -> pd.DataFrame:
    """Per-item greedy correctness of a model on task-suite examples: id, skill, correct."""
    from antidistill.students.sampling import encode_prompts, generate_batch
    from antidistill.students.tasks import grade

    rows = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        out = generate_batch(model, tokenizer, encode_prompts(tokenizer, [e.prompt for e in chunk]),
                             max_new_tokens=max_new_tokens, do_sample=False)
        texts = tokenizer.batch_decode(out.completions, skip_special_tokens=True)
        rows += [{"id": e.id, "skill": e.skill, "correct": bool(grade(e, t))} for e, t in zip(chunk, texts)]
    return pd.DataFrame(rows, columns=["id", "skill", "correct"])


def _ratio(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1), np.nan)


def capability_transfer(items: pd.DataFrame, *, base: str | None = "base", raw: str = "raw",
                        n_boot: int = 2000, conf: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """`items`: long table with columns student, id, skill, correct (every student on the same ids).

    One row per (student, skill) incl. skill `all`: accuracy, CI, de, de CI, transfer ratio, its CI,
    paired exact test vs raw (wins/losses = items only this student / only raw got right).
    """
    wide = items.pivot_table(index=["skill", "id"], columns="student", values="correct", aggfunc="first")
    if wide.isna().any().any():
        raise ValueError("every student must be graded on the same items")
    wide = wide.astype(bool)
    students = list(dict.fromkeys(items["student"]))
    if raw not in students:
        raise ValueError(f"raw student {raw!r} missing from {students}")
    a = (1 - conf) / 2
    rng = np.random.default_rng(seed)
    rows = []
    for skill in [*sorted(wide.index.get_level_values(0).unique()), "all"]:
        sub = wide if skill == "all" else wide.xs(skill, level=0)
        m = sub[students].to_numpy(dtype=float)  # [n_items, n_students]
        n = m.shape[0]
        idx = rng.integers(0, n, size=(n_boot, n))
        boot = m[idx].mean(axis=1)  # [n_boot, n_students]
        acc = m.mean(axis=0)
        j_raw = students.index(raw)
        j_base = students.index(base) if base in students else None
        de_b = _ratio(boot, boot[:, [j_raw]])
        if j_base is not None:
            tr = _ratio(acc - acc[j_base], acc[j_raw] - acc[j_base])
            tr_b = _ratio(boot - boot[:, [j_base]], boot[:, [j_raw]] - boot[:, [j_base]])
        for j, s in enumerate(students):
            test = paired_exact_test(m[:, j].astype(bool), m[:, j_raw].astype(bool))
            row = {"student": s, "skill": skill, "n": n, "accuracy": acc[j],
                   "acc_lo": np.quantile(boot[:, j], a), "acc_hi": np.quantile(boot[:, j], 1 - a),
                   "de": float(_ratio(acc[j], acc[j_raw])),
                   "de_lo": np.nanquantile(de_b[:, j], a) if np.isfinite(de_b[:, j]).any() else np.nan,
                   "de_hi": np.nanquantile(de_b[:, j], 1 - a) if np.isfinite(de_b[:, j]).any() else np.nan}
            if j_base is not None:
                ok = np.isfinite(tr_b[:, j])
                row.update(transfer=float(tr[j]),
                           transfer_lo=np.quantile(tr_b[ok, j], a) if ok.any() else np.nan,
                           transfer_hi=np.quantile(tr_b[ok, j], 1 - a) if ok.any() else np.nan)
            row.update(wins_vs_raw=test["a_only"], losses_vs_raw=test["b_only"], p_vs_raw=test["p_value"])
            rows.append(row)
    return pd.DataFrame(rows)
