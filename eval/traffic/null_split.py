"""False-positive rate on an all-legitimate log split in two by account (issue 17's check).

A simulated log of legitimate accounts only (no campaign) is split at random by account: one half is
the reference (`traffic detect --reference`: a quarter of its accounts trains the models, the rest
calibrates), the other half is evaluated. Every flag is then a false positive. Per detector and alpha:
the flags, the achieved FPR with its exact 95% Clopper-Pearson interval, and two 99.9% upper bounds
on the count: Binomial(N, alpha) (the issue's yardstick) and the exact law of the count under
exchangeability (calibrate.flag_count_bound: flags share one calibration set, so they vary more than
a binomial; a valid procedure exceeds the binomial bound in about 1-2% of cells at these sizes).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..measures.stats import clopper_pearson
from . import calibrate as C
from .detectors.combined import ALL, Suite
from .schema import strip_labels
from .simulate import SimConfig, simulate


def null_split(seed: int, n_accounts: int, alphas, params: dict | None = None, sim: dict | None = None,
               con=None) -> pd.DataFrame:
    from .store import connect

    con = con or connect()
    log = simulate(SimConfig(**{**(sim or {}), "n_legit": n_accounts, "n_campaigns": 0, "seed": seed}))
    C.check_legit_only(log, where="the all-legitimate log")
    log = strip_labels(log)
    ids = np.sort(log["account_id"].unique())
    half = ids[np.random.default_rng(seed).permutation(len(ids))[: len(ids) // 2]]
    ref, ev = log[log["account_id"].isin(half)], log[~log["account_id"].isin(half)]
    train, calib = C.split_reference(ref)
    suite = Suite(params, seed=seed).fit(train)
    n_calib = suite.calibrate(calib, con)
    for a in alphas:
        C.check_alpha(a, n_calib, "alpha")
    s = suite.detect(ev, con)
    rows = []
    for d in ALL:
        for a in alphas:
            k, n = int((s[f"p_{d}"] <= a).sum()), len(s)
            lo, hi = clopper_pearson(k, n)
            binom, exact = C.flag_count_bound(n, n_calib, a)
            rows.append(dict(seed=seed, detector=d, alpha=a, calib_accounts=n_calib, eval_accounts=n, flagged=k,
                             fpr=k / n, fpr_lo=lo, fpr_hi=hi, binom_bound=binom, exact_bound=exact,
                             within_binom=k <= binom, within_exact=k <= exact))
    return pd.DataFrame(rows)


def null_table(seeds, n_accounts: int, alphas, params: dict | None = None, sim: dict | None = None) -> pd.DataFrame:
    return pd.concat([null_split(s, n_accounts, alphas, params, sim) for s in seeds], ignore_index=True)


def markdown(t: pd.DataFrame) -> str:
    """Flagged / N, FPR [95% CP interval], the 99.9% bounds, per seed, detector and alpha."""
    lines = ["| seed | detector | alpha | flagged / N | FPR [95% CI] | 99.9% binomial bound | 99.9% exact bound |",
             "|---|---|---|---|---|---|---|"]
    for r in t.itertuples():
        lines.append(f"| {r.seed} | {r.detector} | {r.alpha:g} | {r.flagged} / {r.eval_accounts} | "
                     f"{r.fpr:.4f} [{r.fpr_lo:.4f}, {r.fpr_hi:.4f}] | "
                     f"{r.binom_bound}{'' if r.within_binom else ' **exceeded**'} | "
                     f"{r.exact_bound}{'' if r.within_exact else ' **exceeded**'} |")
    return "\n".join(lines)
