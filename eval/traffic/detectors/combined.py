"""All detectors together: fit on legitimate training traffic, calibrate on legitimate calibration
accounts, score a log per account; the combined account score and campaign groups.

Combined score: each detector's score becomes its calibrated upper-tail p-value among calibration
accounts (calibrate.tail_pvalue); the account's combined score is -log10 of the smallest of them
(min-p), whose own threshold is then set on the calibration accounts like any other score.
Campaign score: a coordination community (Louvain) is a candidate campaign; it is reported with how
many of its accounts are flagged and its highest combined score.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import calibrate as C
from ..schema import require_unlabelled
from .coordination import coordination_scores
from .cot import CotClassifier, account_scores
from .shift import ShiftTest
from .templates import template_scores

DETECTORS = ("cot", "templates", "coordination", "shift")
PARAMS = {"lsh_threshold": 0.5, "coaction_window": 60.0, "min_coaction": 3, "min_overlap": 0.3, "max_share": 200,
          "mmd_window": 50, "mmd_ref": 200, "mmd_perm": 200, "mmd_min_n": 5, "request_rate": 0.01}


class Suite:
    def __init__(self, params: dict | None = None, seed: int = 0):
        self.p, self.seed = {**PARAMS, **(params or {})}, seed

    def fit(self, train: pd.DataFrame) -> "Suite":
        """Models from legitimate training traffic (a third set of accounts)."""
        require_unlabelled(train)
        prompts = train["prompt"].to_numpy()
        self.cot = CotClassifier(self.seed).fit(prompts)
        self.shift = ShiftTest(self.p["mmd_window"], self.p["mmd_ref"], self.p["mmd_perm"], self.p["mmd_min_n"],
                               self.seed).fit(prompts)
        return self

    def score(self, log: pd.DataFrame, con) -> pd.DataFrame:
        """One row per account: the four detector scores, its community and community size."""
        require_unlabelled(log)
        p = self.p
        out = pd.DataFrame({"account_id": np.sort(log["account_id"].unique())})
        proba = self.cot.proba(log["prompt"].to_numpy())
        c = account_scores(log, proba, self.cut, p["request_rate"], con)
        t = template_scores(log, con, p["lsh_threshold"])
        g = coordination_scores(log, con, seed=self.seed, window=p["coaction_window"], min_co=p["min_coaction"],
                                min_overlap=p["min_overlap"], max_share=p["max_share"])
        s = self.shift.scores(log)
        for name, df in (("cot", c), ("templates", t), ("coordination", g), ("shift", s)):
            out = out.merge(df[["account_id", "score"]].rename(columns={"score": name}), how="left")
        out = out.merge(g[["account_id", "community", "community_size"]], how="left")
        out = out.merge(s[["account_id", "p_value", "n_window"]].rename(columns={"p_value": "shift_p",
                                                                                 "n_window": "shift_n"}), how="left")
        return out.fillna({d: 0.0 for d in DETECTORS})

    def calibrate(self, calib: pd.DataFrame, con, alphas) -> dict:
        """Request cut and account thresholds from legitimate calibration traffic only."""
        require_unlabelled(calib)
        self.cut = C.request_cut(self.cot.proba(calib["prompt"].to_numpy()), self.p["request_rate"])
        self.calib_scores = self.score(calib, con)
        self.calib_scores["combined"] = self.combine(self.calib_scores)
        self.thresholds = {d: {a: C.threshold(self.calib_scores[d], a) for a in alphas}
                           for d in (*DETECTORS, "combined")}
        return self.thresholds

    def combine(self, scores: pd.DataFrame) -> np.ndarray:
        p = np.min([C.tail_pvalue(self.calib_scores[d], scores[d]) for d in DETECTORS], axis=0)
        return -np.log10(p)

    def detect(self, log: pd.DataFrame, con, alpha: float) -> pd.DataFrame:
        """Account scores, the combined score and a flag per detector at FPR alpha."""
        s = self.score(log, con)
        s["combined"] = self.combine(s)
        for d in (*DETECTORS, "combined"):
            s[f"flag_{d}"] = s[d] > self.thresholds[d][alpha]
        return s


def campaigns(scores: pd.DataFrame) -> pd.DataFrame:
    """Candidate campaigns: coordination communities with at least one flagged account."""
    g = scores.groupby("community").agg(accounts=("account_id", "size"), flagged=("flag_combined", "sum"),
                                        max_combined=("combined", "max"))
    return g[g["flagged"] > 0].sort_values(["flagged", "max_combined"], ascending=False).reset_index()
