"""All detectors together: fit on legitimate training traffic, score evaluated and calibration
accounts in one population, conformal p-values, the combined score and campaign groups.

Exchangeability, the condition every p-value here rests on (calibrate.py): a legitimate evaluated
account must be scored by the same function of the same data as a calibration account. Measured on
an all-legitimate log split in two by account (issue 17, seed 0, 900 calibration and 1,200 evaluated
accounts) the old pipeline broke it three ways, each now removed:
- the CoT request cut was set on the calibration requests themselves, so calibration accounts were
  in-sample (CoT flagged 8.3% at alpha 5%): the cut now comes from held-out training accounts;
- the cross-account detectors (templates: accounts per prompt cluster; coordination: co-action and
  shared-attribute degree) count other accounts, so a score depends on the population it is computed
  in, and the calibration log (900 accounts) and the evaluated log (1,200) differ (coordination flagged
  5.0% at 1e-2). The same 600 legitimate accounts scored inside 600, 1,200 and 2,400 accounts:
  template score 99th percentile 1.59, 1.91, 2.10; coordination 3.4, 7.7, 14.2. Making the score
  population-invariant is not enough: edges that scale with the population (co-action, shared VPNs)
  and edges that do not (a shared household network) would need opposite corrections. Instead calibration and evaluated accounts are scored together, in the union
  of the two logs: each account's score is then the same symmetric function of one population, and
  nothing depends on how many legitimate accounts the evaluated log has (a reference of the same period
  as the log is assumed; detect warns otherwise);
- the combined min-p had a threshold of its own, but set on in-sample p-values of the calibration
  accounts (each counted itself: never below 2/(n+1)) against out-of-sample ones of evaluated accounts
  (down to 1/(n+1)): it flagged 4.0% at 1e-2 (with the causes above). calibrate.min_p calibrates it
  leave-one-out (exact; argued there).
Per-account detectors (cot, shift) score each calibration account once; only the cross-account ones
are recomputed per evaluated log. A campaign group is a coordination community (Louvain) with at least
one flagged account.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from antidistill.watermark.errors import UserError

from .. import calibrate as C
from ..schema import require_unlabelled
from .coordination import coordination_scores
from .cot import CotClassifier, account_scores
from .shift import ShiftTest
from .templates import template_scores

DETECTORS = ("cot", "templates", "coordination", "shift")
ALL = (*DETECTORS, "combined")
PARAMS = {"lsh_threshold": 0.5, "coaction_window": 60.0, "min_coaction": 3, "min_overlap": 0.3, "max_share": 200,
          "mmd_window": 50, "mmd_ref": 200, "mmd_perm": 200, "mmd_min_n": 5, "request_rate": 0.01}
POOLED = ("account_id", "timestamp", "prompt", "payment_id", "network")  # what the cross-account detectors read


class Suite:
    def __init__(self, params: dict | None = None, seed: int = 0):
        self.p, self.seed = {**PARAMS, **(params or {})}, seed

    def fit(self, train: pd.DataFrame) -> "Suite":
        """Models from legitimate training traffic (a third set of accounts): a quarter of its accounts
        is held out to set the CoT request cut out of sample."""
        require_unlabelled(train)
        ids = np.sort(train["account_id"].unique())
        held = ids[np.random.default_rng(self.seed).permutation(len(ids))[: len(ids) // 4]]
        fit_part = train[~train["account_id"].isin(held)]
        cut_part = train[train["account_id"].isin(held)] if len(held) else train
        try:
            self.cot = CotClassifier(self.seed).fit(fit_part["prompt"].to_numpy())
            self.shift = ShiftTest(self.p["mmd_window"], self.p["mmd_ref"], self.p["mmd_perm"], self.p["mmd_min_n"],
                                   self.seed).fit(train["prompt"].to_numpy())
        except ValueError as err:  # scikit-learn: too few or too uniform prompts for its vocabulary
            raise UserError(f"the training part of the reference ({len(ids)} accounts, {len(train)} requests) is "
                            f"too small or too uniform to fit the models ({str(err).splitlines()[0]}); give a "
                            f"larger reference") from None
        self.cut = C.request_cut(self.cot.proba(cut_part["prompt"].to_numpy()), self.p["request_rate"])
        return self

    def _own(self, log: pd.DataFrame, con) -> pd.DataFrame:
        """The per-account detectors (they read only the account's own requests)."""
        c = account_scores(log, self.cot.proba(log["prompt"].to_numpy()), self.cut, self.p["request_rate"], con)
        s = self.shift.scores(log)
        out = pd.DataFrame({"account_id": np.sort(log["account_id"].unique())})
        out = out.merge(c[["account_id", "score"]].rename(columns={"score": "cot"}), how="left")
        return out.merge(s[["account_id", "score", "p_value", "n_window"]]
                         .rename(columns={"score": "shift", "p_value": "shift_p", "n_window": "shift_n"}), how="left")

    def calibrate(self, calib: pd.DataFrame, con) -> int:
        """Keep the legitimate calibration log and score its accounts on the per-account detectors."""
        require_unlabelled(calib)
        self.calib_log = calib[[c for c in POOLED if c in calib.columns]]
        self.calib_own = self._own(calib, con)
        self.n_calib = len(self.calib_own)
        return self.n_calib

    def detect(self, log: pd.DataFrame, con, alpha: float | None = None) -> pd.DataFrame:
        """One row per account of `log`: each detector's score and conformal p-value (p_NAME), the
        combined score (-log10 of its calibrated p-value) and that p-value, the community;
        flag_NAME = p_NAME <= alpha when alpha is given.
        attrs['calibration']: the calibration accounts' scores in the same population."""
        require_unlabelled(log)
        shared = np.intersect1d(log["account_id"].unique(), self.calib_own["account_id"].to_numpy())
        if len(shared):
            raise UserError(f"the evaluated log and the calibration accounts share {len(shared)} accounts "
                            f"(e.g. {shared[0]})")
        if alpha is not None:
            C.check_alpha(alpha, self.n_calib, "alpha")
        p = self.p
        pool = pd.concat([self.calib_log, log[[c for c in POOLED if c in log.columns]]], ignore_index=True)
        t = template_scores(pool, con, p["lsh_threshold"])
        g = coordination_scores(pool, con, seed=self.seed, window=p["coaction_window"], min_co=p["min_coaction"],
                                min_overlap=p["min_overlap"], max_share=p["max_share"])
        both = pd.concat([self.calib_own.assign(calibration=True),
                          self._own(log, con).assign(calibration=False)], ignore_index=True)
        both = both.merge(t[["account_id", "score"]].rename(columns={"score": "templates"}), how="left")
        both = both.merge(g[["account_id", "score", "community", "community_size"]]
                          .rename(columns={"score": "coordination"}), how="left")
        both = both.fillna({"cot": 0.0, "templates": 0.0, "coordination": 0.0, "shift": 0.0})
        cal, out = both[both["calibration"]], both[~both["calibration"]]
        out = out.drop(columns="calibration").sort_values("account_id").reset_index(drop=True)
        cal = cal.drop(columns="calibration").reset_index(drop=True)
        for d in DETECTORS:
            out[f"p_{d}"] = C.pvalue(cal[d], out[d])
        p_x, p_c = C.min_p({d: cal[d].to_numpy() for d in DETECTORS}, {d: out[d].to_numpy() for d in DETECTORS})
        out["combined"], out["p_combined"], cal["combined"] = -np.log10(p_x), p_x, -np.log10(p_c)
        if alpha is not None:
            for d in ALL:
                out[f"flag_{d}"] = out[f"p_{d}"] <= alpha
        out.attrs["calibration"] = cal
        return out


def thresholds(scores: pd.DataFrame, alphas) -> dict:
    """{detector: {alpha: score threshold}} of a detect() result: a detector flags a score strictly above
    its threshold; the combined score is -log10 of its own p-value, flagged at or above -log10(m / (n + 1))."""
    cal = scores.attrs["calibration"]
    n = len(cal)
    out = {d: {a: C.threshold(cal[d], a) for a in alphas} for d in DETECTORS}
    out["combined"] = {a: float(-np.log10(np.floor(a * (n + 1) + 1e-9) / (n + 1))) for a in alphas}
    return out


def campaigns(scores: pd.DataFrame) -> pd.DataFrame:
    """Candidate campaigns: coordination communities with at least one flagged account."""
    g = scores.groupby("community").agg(accounts=("account_id", "size"), flagged=("flag_combined", "sum"),
                                        max_combined=("combined", "max"))
    return g[g["flagged"] > 0].sort_values(["flagged", "max_combined"], ascending=False).reset_index()
