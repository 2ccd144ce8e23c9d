"""Robustness curves: each evasion knob swept alone, calibration accounts scored with each evaluated log.

For each level `n_campaigns` campaigns are simulated afresh (campaign traffic only, a new seed per level) and
mixed into a fixed background of evaluation legitimate accounts (`background_accounts` of them, a
seeded sample: the cross-account detectors need a population, and a smaller one keeps the sweep to a
few minutes). The curve is the account TPR at FPR alpha and the campaign recall per detector.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .metrics import ALL, truth
from .schema import strip_labels
from .simulate import simulate

KNOB_LABELS = {"paraphrase_rate": "template paraphrase rate", "jitter_s": "timing jitter (s)",
               "accounts_per_campaign": "accounts per campaign", "requests_per_account": "requests per account",
               "cover_share": "benign cover-traffic share"}


def background(eval_log: pd.DataFrame, n_accounts: int, seed: int) -> pd.DataFrame:
    legit = np.sort(eval_log.loc[eval_log["campaign_id"] < 0, "account_id"].unique())
    keep = np.random.default_rng(seed).choice(legit, size=min(n_accounts, len(legit)), replace=False)
    return eval_log[eval_log["account_id"].isin(keep)]


def sweep(cfg, suite, con, eval_log: pd.DataFrame, alpha: float, bar=None) -> pd.DataFrame:
    """The curves of `cfg` (a TrafficConfig) for the fitted, calibrated `suite`; `bar` advances per level."""
    ev = cfg.evasion
    bg = background(eval_log, ev.background_accounts, cfg.seed)
    levels = [(k, v) for k in KNOB_LABELS for v in getattr(ev, k)]
    rows = []
    for i, (knob, value) in enumerate(levels):
        camp = simulate(cfg.sim_config(**{knob: value, "n_legit": 0, "n_campaigns": ev.n_campaigns},
                                       seed=cfg.seed + 1000 + i, prefix="v"))
        log = pd.concat([bg, camp], ignore_index=True).sort_values("timestamp", kind="stable")
        scores = suite.detect(strip_labels(log), con, alpha).merge(truth(log), on="account_id")
        c, legit = scores["campaign_id"] >= 0, scores["campaign_id"] < 0
        for d in ALL:
            f = scores[f"flag_{d}"]
            per = scores[c].groupby("campaign_id")[f"flag_{d}"].sum()
            rows.append(dict(knob=knob, value=value, detector=d, tpr=float(f[c].mean()),
                             campaign_recall=float((per > 0).mean()), background_fpr=float(f[legit].mean()),
                             campaign_accounts=int(c.sum()), campaign_requests=len(camp)))
        if bar is not None:
            bar.update(1)
    return pd.DataFrame(rows)
