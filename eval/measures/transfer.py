"""Capability transfer (researchers): how much does a protection cut what a student learns?

Students are graded on the held-out test split (greedy, exact match). Per student and skill:
accuracy with a 95% CI; DE = acc / acc_raw (distillation effectiveness); transfer ratio
= (acc - acc_base) / (acc_raw - acc_base), where `base` is the student before distillation and
`raw` the one distilled on unprotected outputs; an exact paired test against raw for each training
seed. Every student is trained with several seeds; the bootstrap resamples seeds and test items
(two levels) jointly for all students (they share seeds and items), so ratios get paired
intervals that cover both the training-seed and the item variance.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .stats import paired_exact_test


def grade_items(model, tokenizer, examples, *, task=None, batch_size: int = 100,
                max_new_tokens: int = 128) -> pd.DataFrame:
    """Per-item greedy correctness (full credit from `task`'s grader; default the demo suite) of a
    model on a task's examples: id, skill, correct. Prompts go through the model's chat template
    when its tokenizer has one."""
    from antidistill.students.batching import encode_prompts
    from antidistill.students.models.sampling import generate_batch
    from antidistill.students.tasks.registry import parse_task

    task = parse_task(task)
    rows = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        out = generate_batch(model, tokenizer, encode_prompts(tokenizer, [e.prompt for e in chunk]),
                             max_new_tokens=max_new_tokens, do_sample=False)
        texts = tokenizer.batch_decode(out.completions, skip_special_tokens=True)
        rows += [{"id": e.id, "skill": e.skill, "correct": task.correct(e, t)} for e, t in zip(chunk, texts)]
    return pd.DataFrame(rows, columns=["id", "skill", "correct"])


def _ratio(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1), np.nan)


def _cube(items: pd.DataFrame, students: list[str]) -> tuple[np.ndarray, list, list]:
    """correct[student, seed, item] from a long table (every student graded with every seed on the
    same items); seeds and items in sorted order."""
    if "seed" not in items:
        items = items.assign(seed=0)
    seeds = sorted(items["seed"].unique())
    keys = sorted(set(zip(items["skill"], items["id"])))
    wide = items.pivot_table(index=["skill", "id"], columns=["student", "seed"], values="correct", aggfunc="first")
    cols = pd.MultiIndex.from_product([students, seeds])
    missing = [c for c in cols if c not in wide.columns]
    if missing or wide.isna().any().any():
        raise ValueError(f"every student must be graded with every seed on the same items (missing {missing[:3]})")
    m = wide.loc[keys, cols].to_numpy(dtype=float).T.reshape(len(students), len(seeds), len(keys))
    return m, seeds, keys


def boot_counts(rng, n_boot: int, n: int) -> np.ndarray:
    """Multiplicities of a bootstrap resample of n units, [n_boot, n] (each row sums to n)."""
    idx = rng.integers(0, n, size=(n_boot, n))
    return np.stack([np.bincount(r, minlength=n) for r in idx]).astype(float)


def boot_means(m: np.ndarray, seed_w: np.ndarray, item_w: np.ndarray) -> np.ndarray:
    """Bootstrap accuracy [n_boot, n_students] of m[student, seed, item] under resampling weights of
    seeds ([n_boot, S]) and items ([n_boot, n]) -- one two-level resample shared by all students, so
    students that share seeds (same initialisation) and items stay paired."""
    s, n = seed_w.shape[1], item_w.shape[1]
    per_item = np.einsum("bs,jsi->bji", seed_w, m)  # [n_boot, students, items]
    return np.einsum("bji,bi->bj", per_item, item_w) / (s * n)


ROBUST_CONF = 0.99  # the stricter interval a conclusion must clear to be called robust (report)


def capability_transfer(items: pd.DataFrame, *, base: str | None = "base", raw: str = "raw",
                        n_boot: int = 2000, conf: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """`items`: long table with columns student, seed, id, skill, correct (every student graded with
    every training seed on the same ids; `seed` may be absent for one seed).

    One row per (student, skill) incl. skill `all`: accuracy (mean over seeds and items), 95% CI,
    DE = acc / acc_raw and transfer ratio = (acc - acc_base) / (acc_raw - acc_base), each with an
    interval from a bootstrap over seeds and items (accuracy and DE also at ROBUST_CONF, the `_99`
    columns, from the same replicates); per seed (seed k of a student against seed k of
    raw): accuracy, DE and the exact paired test on the items.
    """
    students = list(dict.fromkeys(items["student"]))
    if raw not in students:
        raise ValueError(f"raw student {raw!r} missing from {students}")
    cube, seeds, keys = _cube(items, students)
    skills_of = np.array([k[0] for k in keys])
    a, a99 = (1 - conf) / 2, (1 - ROBUST_CONF) / 2
    rng = np.random.default_rng(seed)
    j_raw = students.index(raw)
    j_base = students.index(base) if base in students else None
    rows = []

    def q(x, lo):
        x = x[np.isfinite(x)]
        return float(np.quantile(x, lo)) if x.size else np.nan

    for skill in [*sorted(set(skills_of)), "all"]:
        m = cube if skill == "all" else cube[:, :, skills_of == skill]  # [students, seeds, items]
        n = m.shape[2]
        boot = boot_means(m, boot_counts(rng, n_boot, len(seeds)), boot_counts(rng, n_boot, n))
        acc = m.mean(axis=(1, 2))
        per_seed = m.mean(axis=2)  # [students, seeds]
        de_b = _ratio(boot, boot[:, [j_raw]])
        if j_base is not None:
            tr = _ratio(acc - acc[j_base], acc[j_raw] - acc[j_base])
            tr_b = _ratio(boot - boot[:, [j_base]], boot[:, [j_raw]] - boot[:, [j_base]])
        for j, s in enumerate(students):
            tests = [paired_exact_test(m[j, k].astype(bool), m[j_raw, k].astype(bool)) for k in range(len(seeds))]
            row = {"student": s, "skill": skill, "n": n, "n_seeds": len(seeds), "accuracy": acc[j],
                   "acc_lo": q(boot[:, j], a), "acc_hi": q(boot[:, j], 1 - a),
                   "de": float(_ratio(acc[j], acc[j_raw])), "de_lo": q(de_b[:, j], a), "de_hi": q(de_b[:, j], 1 - a),
                   "acc_lo_99": q(boot[:, j], a99), "acc_hi_99": q(boot[:, j], 1 - a99),
                   "de_lo_99": q(de_b[:, j], a99), "de_hi_99": q(de_b[:, j], 1 - a99)}
            if j_base is not None:
                row.update(transfer=float(tr[j]), transfer_lo=q(tr_b[:, j], a), transfer_hi=q(tr_b[:, j], 1 - a))
            row.update(wins_vs_raw=sum(t["a_only"] for t in tests), losses_vs_raw=sum(t["b_only"] for t in tests),
                       acc_seeds=" ".join(f"{v:.3f}" for v in per_seed[j]),
                       de_seeds=" ".join(f"{v:.2f}" for v in _ratio(per_seed[j], per_seed[j_raw])),
                       p_vs_raw_seeds=" ".join(f"{t['p_value']:.3g}" for t in tests),
                       p_vs_raw_max=max(t["p_value"] for t in tests))
            rows.append(row)
    return pd.DataFrame(rows)
