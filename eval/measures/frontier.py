"""The frontier (researchers): teacher accuracy a legitimate user keeps (x) against the accuracy of a
student distilled on those outputs (y), and each countermeasure against temperature's curve.

Temperature is the plain way to trade teacher accuracy for worse traces, so a countermeasure is
worth its cost only where its student lands below temperature's curve at the same teacher accuracy.
The curve is interpolated linearly between temperature's points (ordered by teacher accuracy);
outside their range the comparison is undefined and reported as such. One bootstrap resamples the
teacher's prompts, the students' training seeds and test items (shared by all protections, which
answer the same prompts and items), recomputes every point and the interpolation, and gives
intervals for the points and for the differences.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .transfer import _cube, boot_counts, boot_means

BASELINE_FAMILY = "temperature"


def _matched(tx: np.ndarray, ty: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Temperature's student accuracy at teacher accuracies x, row by row (bootstrap replicates):
    tx, ty [B, k] its points, x [B, m]; NaN outside its range of teacher accuracy."""
    out = np.full(x.shape, np.nan)
    for b in range(x.shape[0]):
        o = np.argsort(tx[b], kind="stable")
        xs, ys = tx[b][o], ty[b][o]
        out[b] = np.where((x[b] >= xs[0]) & (x[b] <= xs[-1]), np.interp(x[b], xs, ys), np.nan)
    return out


def frontier(teacher_items: pd.DataFrame, student_items: pd.DataFrame, sweeps: dict, *, none_on_curve: bool = False,
             n_boot: int = 2000, conf: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per protection: family, swept parameter and value, teacher and student accuracy with
    intervals, and (for protections outside the temperature family) student accuracy minus
    temperature's at the same teacher accuracy, with its interval and the share of bootstrap
    replicates where that teacher accuracy lies inside temperature's range.

    `teacher_items`: protection, id, correct (the teacher's sampled answers, same prompts for every
    protection); `student_items`: student (protection spec, `none` for the raw student), seed, id,
    skill, correct; `sweeps`: spec -> (family, parameter, value) as `expand_protections` gives;
    `none_on_curve`: the unprotected teacher is temperature's t = 1 point (corpora sampled at 1).
    """
    specs = [s for s in sweeps if s in set(teacher_items["protection"]) and s in set(student_items["student"])]
    tw = teacher_items.pivot_table(index="id", columns="protection", values="correct", aggfunc="first")[specs]
    if tw.isna().any().any():
        raise ValueError("every protection's corpus must answer the same prompts")
    t = tw.to_numpy(dtype=float).T  # [protections, prompts]
    cube, seeds, _ = _cube(student_items[student_items["student"].isin(specs)], specs)
    rng = np.random.default_rng(seed)
    tb = boot_counts(rng, n_boot, t.shape[1]) @ t.T / t.shape[1]  # [n_boot, protections]
    sb = boot_means(cube, boot_counts(rng, n_boot, len(seeds)), boot_counts(rng, n_boot, cube.shape[2]))
    tx, sy = t.mean(axis=1), cube.mean(axis=(1, 2))
    on_curve = [s for s in specs if sweeps[s][0] == BASELINE_FAMILY or (s == "none" and none_on_curve)]
    base = [specs.index(s) for s in on_curve]
    a = (1 - conf) / 2
    if len(base) >= 2:
        diff = sy - _matched(tx[base][None], sy[base][None], tx[None])[0]
        diff_b = sb - _matched(tb[:, base], sb[:, base], tb)
    rows = []
    for j, s in enumerate(specs):
        family, name, value = sweeps[s]
        row = {"protection": s, "family": BASELINE_FAMILY if s in on_curve else family, "parameter": name or "", "value": value or "",
               "teacher_acc": tx[j], "teacher_lo": np.quantile(tb[:, j], a), "teacher_hi": np.quantile(tb[:, j], 1 - a),
               "student_acc": sy[j], "student_lo": np.quantile(sb[:, j], a), "student_hi": np.quantile(sb[:, j], 1 - a),
               "vs_temperature": np.nan, "vs_temperature_lo": np.nan, "vs_temperature_hi": np.nan,
               "matched_share": np.nan}
        if len(base) >= 2 and s not in on_curve:
            ok = np.isfinite(diff_b[:, j])
            row.update(vs_temperature=diff[j], matched_share=ok.mean())
            if ok.any():
                row.update(vs_temperature_lo=np.quantile(diff_b[ok, j], a),
                           vs_temperature_hi=np.quantile(diff_b[ok, j], 1 - a))
        rows.append(row)
    return pd.DataFrame(rows)
