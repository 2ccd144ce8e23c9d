"""Window-level MMD test (issue 12 gap 1): does a window of k requests differ from legitimate traffic?

A provider sees a stream of requests per shared slice (a network, a payment group, an hour); the test
asks whether a window of k requests from that slice is distributed like legitimate traffic. Here the
window is k requests of which a fraction f comes from campaign traffic and the rest from legitimate
traffic (the attacker-fraction protocol of the MMD window test the issue cites), archetype-agnostic.

Statistic: the unbiased MMD^2 (diagonal terms left out) with the Gaussian kernel on the shift
detector's TF-IDF + SVD embedding, bandwidth fixed on the reference only (ShiftTest.fit). p-value:
(b + 1) / (m + 1) over m permutations of window u reference, all permutations in one matrix product.
Null windows are drawn from legitimate calibration traffic only; the reference from training traffic.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .detectors.shift import ShiftTest, _sqdist


def unbiased_mmd_pvalue(X: np.ndarray, Y: np.ndarray, gamma: float, n_perm: int, rng) -> tuple[float, float]:
    """(unbiased MMD^2, permutation p-value) of window X against reference Y."""
    n, m = len(X), len(Y)
    Z = np.vstack([X, Y])
    K = np.exp(-gamma * _sqdist(Z, Z))
    np.fill_diagonal(K, 0.0)
    U = np.zeros((n + m, n_perm + 1))
    U[:n, 0] = 1.0
    for j in range(1, n_perm + 1):  # one index draw per permutation; the kernel work is one product
        U[rng.permutation(n + m)[:n], j] = 1.0
    KU, row = K @ U, K.sum(1)
    xx = np.einsum("ij,ij->j", U, KU)
    xy = np.einsum("ij,ij->j", 1.0 - U, KU)
    yy = row.sum() - xx - 2.0 * xy
    stat = xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2.0 * xy / (n * m)
    return float(stat[0]), float((1 + np.count_nonzero(stat[1:] >= stat[0])) / (n_perm + 1))


def window_tests(test: ShiftTest, legit_prompts, attack_prompts, fraction: float, k: int, n_windows: int,
                 n_perm: int, seed: int) -> np.ndarray:
    """(MMD^2, p-value) rows of n_windows windows of k requests, round(fraction * k) of them campaign requests."""
    rng = np.random.default_rng(seed)
    legit, attack = np.asarray(legit_prompts, dtype=object), np.asarray(attack_prompts, dtype=object)
    n_att = int(round(fraction * k))
    out = np.empty((n_windows, 2))
    for w in range(n_windows):  # one test per window; each is one (k + ref)^2 kernel and one product
        idx = rng.choice(len(legit), k - n_att, replace=False)
        prompts = legit[idx] if n_att == 0 else np.r_[legit[idx], attack[rng.choice(len(attack), n_att, replace=False)]]
        out[w] = unbiased_mmd_pvalue(test.embed(prompts), test.Y, test.gamma, n_perm, rng)
    return out


def calibrated_threshold(null_stats: np.ndarray, alpha: float) -> float:
    """MMD^2 above which a window is rejected: the rank-ceil((n + 1)(1 - alpha)) null statistic (inf if none).

    The permutation p-value assumes window and reference are exchangeable; requests of different
    accounts are not (each heavy user or classroom has its own topics), so the nominal level is not
    kept on legitimate windows (tests/eval/test_traffic_shift_windows.py). The threshold therefore
    comes from legitimate calibration windows, as every other detector's does."""
    s = np.sort(null_stats)
    r = int(np.ceil((len(s) + 1) * (1 - alpha)))
    return float(s[r - 1]) if r <= len(s) else float("inf")


def fraction_curve(test: ShiftTest, calib_prompts, eval_legit, eval_attack, fractions, k: int, n_windows: int,
                   n_perm: int, alpha: float, seed: int) -> pd.DataFrame:
    """Window rejection rates: by the nominal permutation p-value and by the calibrated MMD^2 threshold.

    Calibration-only windows set the threshold; evaluation legitimate windows give the FPR, evaluation
    windows with an attacker fraction f the TPR."""
    null = window_tests(test, calib_prompts, [], 0.0, k, n_windows, n_perm, seed)
    thr = calibrated_threshold(null[:, 0], alpha)
    sets = [("calibration legitimate", 0.0, null),
            ("evaluation legitimate", 0.0, window_tests(test, eval_legit, [], 0.0, k, n_windows, n_perm, seed + 1))]
    sets += [("evaluation mixed", f, window_tests(test, eval_legit, eval_attack, f, k, n_windows, n_perm, seed + 2 + i))
             for i, f in enumerate(fractions)]
    return pd.DataFrame([{"windows": w, "fraction": f, "n": len(r), "rate_p_le_alpha": float((r[:, 1] <= alpha).mean()),
                          "rate_calibrated": float((r[:, 0] > thr).mean()), "threshold_mmd2": thr} for w, f, r in sets])

def main(argv=None) -> None:
    """python -m antidistill.eval.traffic.shift_windows LOGDIR OUTDIR: the window table from a traffic run's logs."""
    import json
    import sys
    import time
    from pathlib import Path

    from antidistill.watermark.errors import atomic_write

    from .schema import strip_labels
    from .store import read_log

    logdir, out = map(Path, (argv or sys.argv[1:]))
    cfg = {"k": 50, "ref_size": 200, "n_perm": 200, "n_windows": 200, "alpha": 0.01, "seed": 1,
           "fractions": [0.05, 0.1, 0.2, 0.3, 0.5]}
    t0 = time.perf_counter()
    train, calib, ev = (read_log(logdir / f"{k}.parquet") for k in ("train", "calibration", "evaluation"))
    test = ShiftTest(ref_size=cfg["ref_size"], seed=cfg["seed"]).fit(strip_labels(train)["prompt"].to_numpy())
    att = ev["campaign_id"].to_numpy() >= 0  # labels used only to build the mixed windows, never by the test
    table = fraction_curve(test, calib["prompt"].to_numpy(), ev["prompt"].to_numpy()[~att], ev["prompt"].to_numpy()[att],
                           cfg["fractions"], cfg["k"], cfg["n_windows"], cfg["n_perm"], cfg["alpha"], cfg["seed"])
    with atomic_write(out / "shift_fraction.csv") as fh:
        table.to_csv(fh, index=False)
    with atomic_write(out / "shift_fraction.json") as fh:
        json.dump({"config": cfg, "wall_seconds": round(time.perf_counter() - t0, 1), "threads": 1}, fh, indent=2)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
