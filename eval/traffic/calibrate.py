"""Thresholds from legitimate-only calibration accounts, never from evaluation traffic.

Rule: for a target false-positive rate alpha among n calibration accounts, the threshold is the
(floor(alpha n) + 1)-th largest calibration score and an account is flagged when its score is
strictly above it, so at most floor(alpha n) calibration accounts are flagged. With n accounts the
smallest nonzero FPR this can resolve is 1/n: alpha = 1e-4 needs n >= 10^4 (below that the rule
flags only accounts above every calibration account, an empirical FPR of 0 that says only
FPR <~ 3/n at 95%). The FPR actually achieved is measured on disjoint evaluation legit accounts
(metrics.py, with a Clopper-Pearson interval).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from antidistill.watermark.errors import UserError


def check_legit_only(calibration: pd.DataFrame, evaluation_accounts=None) -> None:
    """Refuse calibration traffic that carries a campaign label or shares accounts with evaluation."""
    if "campaign_id" in calibration.columns and (calibration["campaign_id"].to_numpy() != -1).any():
        raise UserError("calibration traffic must be legitimate only: it holds rows with a campaign_id")
    if evaluation_accounts is not None:
        shared = np.intersect1d(calibration["account_id"].unique(), np.asarray(evaluation_accounts, dtype=object))
        if len(shared):
            raise UserError(f"calibration and evaluation traffic share {len(shared)} accounts (e.g. {shared[0]}); "
                            f"calibrate on disjoint legitimate accounts")


def threshold(calib_scores, alpha: float) -> float:
    """The score above which at most floor(alpha n) of the calibration scores lie."""
    s = np.sort(np.asarray(calib_scores, dtype=float))[::-1]
    if len(s) == 0:
        raise UserError("no calibration accounts to set a threshold on")
    return float(s[min(int(np.floor(alpha * len(s))), len(s) - 1)])


def request_cut(calib_values, rate: float) -> float:
    """Request-level cut: the (1 - rate) quantile of calibration requests' values."""
    return float(np.quantile(np.asarray(calib_values, dtype=float), 1 - rate))


def tail_pvalue(calib_scores, scores) -> np.ndarray:
    """Empirical upper-tail p-value of each score among calibration scores: (1 + #{calib >= s}) / (n + 1)."""
    c = np.sort(np.asarray(calib_scores, dtype=float))
    ge = len(c) - np.searchsorted(c, np.asarray(scores, dtype=float), side="left")
    return (1 + ge) / (len(c) + 1)
