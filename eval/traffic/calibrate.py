"""Conformal p-values from legitimate-only calibration accounts, never from evaluation traffic.

Rule (per detector): an evaluated account with score s gets the conformal p-value
    p = (1 + #{calibration scores >= s}) / (n + 1)
among n calibration accounts, and is flagged at level alpha when p <= alpha. If the evaluated account
is exchangeable with the calibration accounts (a legitimate account drawn like them, scored by the
same function of the same population: detectors/combined.py scores both in one pool), then
P(p <= alpha) <= floor(alpha (n + 1)) / (n + 1) <= alpha exactly, for every n, ties included (ties
count against the account, so they only make it conservative). Equivalently the account is flagged
when its score is strictly above the m-th largest calibration score, m = floor(alpha (n + 1)).

Resolution: m = 0 when alpha < 1 / (n + 1); no account can then be flagged at all, so such an alpha
is refused (`check_alpha`) rather than silently read as "flag only above every calibration account"
(whose real rate is 1 / (n + 1) > alpha). 1e-3 needs n >= 999 calibration accounts, 1e-4 n >= 9999.

The count of flags among N evaluated legitimate accounts is not Binomial(N, alpha): all of them are
compared with one calibration set, so they share its luck. Its exact law under exchangeability (no
ties) is negative hypergeometric: the number of evaluated accounts ranked above the m-th calibration
account among all n + N (`flag_count_bound`).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from antidistill.watermark.errors import UserError


def check_legit_only(reference: pd.DataFrame, evaluation_accounts=None, where: str = "calibration traffic") -> None:
    """Refuse reference traffic that carries a campaign label or shares accounts with evaluation.

    Call it on the labelled log, before `schema.strip_labels`, or the label check cannot fire."""
    if "campaign_id" in reference.columns:
        cid = pd.to_numeric(reference["campaign_id"], errors="coerce")
        bad = ~(cid == -1)
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            raise UserError(f"{where} must be legitimate only: row {i + 1} has campaign_id "
                            f"{reference['campaign_id'].iloc[i]} (-1 = legitimate)")
    if evaluation_accounts is not None:
        shared = np.intersect1d(reference["account_id"].astype(str).unique(),
                                np.asarray(evaluation_accounts, dtype=object).astype(str))
        if len(shared):
            raise UserError(f"{where} and the evaluated log share {len(shared)} accounts (e.g. {shared[0]}); "
                            f"the reference must hold other, legitimate accounts")


def resolution(n_calib: int) -> float:
    """The smallest alpha n calibration accounts can resolve: 1 / (n + 1)."""
    return 1.0 / (n_calib + 1)


def check_alpha(alpha: float, n_calib: int, where: str = "--alpha") -> None:
    """Refuse an alpha the calibration set cannot resolve (no account could ever be flagged)."""
    if n_calib < 1:
        raise UserError("no calibration accounts to calibrate on")
    if math.floor(alpha * (n_calib + 1) + 1e-9) < 1:
        raise UserError(f"{where} {alpha:g} is below the resolution 1/(n+1) = {resolution(n_calib):.2g} of "
                        f"{n_calib:,} calibration accounts; use alpha >= {resolution(n_calib):.2g} or at least "
                        f"{math.ceil(1 / alpha) - 1:,} calibration accounts")


def ge_counts(calib_scores, scores) -> np.ndarray:
    """#{calibration scores >= s} for each s (integers, so equal inputs give equal counts)."""
    c = np.sort(np.asarray(calib_scores, dtype=float))
    return len(c) - np.searchsorted(c, np.asarray(scores, dtype=float), side="left")


def pvalue(calib_scores, scores) -> np.ndarray:
    """Conformal upper-tail p-value of each score among calibration scores: (1 + #{calib >= s}) / (n + 1)."""
    return (1 + ge_counts(calib_scores, scores)) / (len(calib_scores) + 1)


def threshold(calib_scores, alpha: float) -> float:
    """The score strictly above which an account is flagged at alpha (p <= alpha): the m-th largest
    calibration score, m = floor(alpha (n + 1)); refused below the resolution."""
    s = np.sort(np.asarray(calib_scores, dtype=float))[::-1]
    check_alpha(alpha, len(s), "alpha")
    return float(s[min(math.floor(alpha * (len(s) + 1) + 1e-9), len(s)) - 1])


def min_p(calib: dict, scores: dict) -> tuple[np.ndarray, np.ndarray]:
    """The combined score of several detectors, calibrated as a score of its own.

    Each account's statistic is its vector of per-detector conformal ranks, sorted (smallest first) and
    compared lexicographically: min-p first, ties (frequent: ranks are integers) broken by the second
    smallest, and so on. Min-p read as a p-value would be wrong by up to the number of detectors k (k
    tries: 1 - (1 - alpha)^k for independent detectors, 3.7 alpha for k = 4 at 5%; tested). Bonferroni
    (k * min p) is valid and nearly exact for independent detectors, but ours are not independent (a
    heavy single-topic user is extreme on cot, templates and shift at once), it pays the full factor k
    when they agree, and it needs alpha / k >= 1 / (n + 1): with 3,000 calibration accounts 1e-3 would be
    out of reach. Simes has the same resolution problem and needs positive dependence. Instead the
    statistic itself is calibrated on the calibration accounts, conformally, leave-one-out (the
    tie-break matters: on min-p alone each detector's top calibration account has rank 1, so with k
    such accounts and m = floor(alpha (n + 1)) <= k nothing could ever be flagged, e.g. 1e-3 with 3,000):
    r_d(c) = 1 + #{c' != c: s_d(c') >= s_d(c)} for a calibration account c, r_d(x) = 1 + #{c: s_d(c) >=
    s_d(x)} for an evaluated account x, and
        p = (1 + #{c: sorted r(c) <=lex sorted r(x)}) / (n + 1).
    Why exact: full conformal prediction over the bag {x} + calibration, with this symmetric statistic,
    gives a p-value valid at every level under exchangeability; adding x to the bag can only raise a
    calibration account's ranks, hence its sorted vector componentwise and lexicographically, so the
    count above is >= the full-conformal one: valid, with the resolution 1 / (n + 1) of one detector.
    Ranks beyond what fits a 62-bit key (3 of them up to n = 1.6e6) are left as ties: conservative.

    Returns (the p-value of each evaluated account, the calibration accounts' leave-one-out p-values)."""
    names = list(calib)
    n = len(calib[names[0]])
    r_x = np.sort([1 + ge_counts(calib[d], scores[d]) for d in names], axis=0)
    r_c = np.sort([ge_counts(calib[d], calib[d]) for d in names], axis=0)
    base = n + 2
    levels = max(1, min(len(names), int(62 / np.log2(base))))
    weights = np.array([base ** (levels - 1 - i) for i in range(levels)], dtype=np.int64)
    k_x, k_c = weights @ r_x[:levels].astype(np.int64), weights @ r_c[:levels].astype(np.int64)
    ordered = np.sort(k_c)
    p_x = (1 + np.searchsorted(ordered, k_x, side="right")) / (n + 1)
    p_c = np.searchsorted(ordered, k_c, side="right") / (n + 1)  # 1 + #{others <=}: itself counted once
    return p_x, p_c


def request_cut(values, rate: float) -> float:
    """Request-level cut: the (1 - rate) quantile of held-out legitimate requests' values."""
    return float(np.quantile(np.asarray(values, dtype=float), 1 - rate))


def flag_count_bound(n_eval: int, n_calib: int, alpha: float, level: float = 0.999) -> tuple[int, int]:
    """Upper `level` bounds on the number of flagged legitimate accounts among n_eval at alpha:
    (binomial Binomial(n_eval, alpha), exact conformal: negative hypergeometric, see module doc)."""
    from scipy import stats

    m = math.floor(alpha * (n_calib + 1) + 1e-9)
    binom = int(stats.binom.ppf(level, n_eval, alpha))
    exact = int(stats.nhypergeom(n_calib + n_eval, n_eval, m).ppf(level)) if m >= 1 else 0
    return binom, exact


def split_reference(reference: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, calibration): a seeded quarter of the reference's accounts trains the models, the rest
    calibrate (disjoint accounts, so calibration accounts stay out of sample for every model)."""
    ids = np.sort(reference["account_id"].unique())
    train_ids = ids[np.random.default_rng(seed).permutation(len(ids))[: max(1, len(ids) // 4)]]
    inside = reference["account_id"].isin(train_ids)
    return reference[inside], reference[~inside]
