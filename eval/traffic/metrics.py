"""Account-level detection metrics against the simulator's ground truth (read here, never by detectors).

- TPR at FPR alpha: share of campaign accounts flagged; the FPR achieved on evaluation legitimate
  accounts (disjoint from calibration) with an exact Clopper-Pearson 95% interval;
- campaign recall: share of campaigns with at least one flagged account;
- collateral: flag rate per legitimate archetype (who pays for the thresholds);
- ROC per detector over evaluation accounts; time to detection per campaign.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..measures.stats import clopper_pearson
from .calibrate import flag_count_bound
from .detectors.combined import ALL


def truth(labelled_log: pd.DataFrame) -> pd.DataFrame:
    """account_id, campaign_id, archetype (one row per account)."""
    return labelled_log.groupby("account_id", as_index=False)[["campaign_id", "archetype"]].first()


def detection_table(scores: pd.DataFrame, gt: pd.DataFrame, thresholds: dict, n_calib: int) -> pd.DataFrame:
    """Per detector and alpha (flagged: conformal p-value <= alpha; `thresholds` only reported)."""
    s = scores.merge(gt, on="account_id")
    camp, legit = s["campaign_id"] >= 0, s["campaign_id"] < 0
    rows = []
    for d in ALL:
        for alpha, t in thresholds[d].items():
            flag = s[f"p_{d}"] <= alpha
            fp, n_legit = int((flag & legit).sum()), int(legit.sum())
            lo, hi = clopper_pearson(fp, n_legit)
            per = s[camp].assign(f=flag[camp]).groupby("campaign_id")["f"]
            binom, exact = flag_count_bound(n_legit, n_calib, alpha)
            rows.append(dict(detector=d, alpha=alpha, threshold=t, tpr=float(flag[camp].mean()),
                             campaign_recall=float((per.sum() > 0).mean()), mean_campaign_tpr=float(per.mean().mean()),
                             fpr=fp / n_legit, fpr_lo=lo, fpr_hi=hi, false_positives=fp, legit_accounts=n_legit,
                             binom_bound=binom, exact_bound=exact,
                             campaign_accounts=int(camp.sum()), calib_accounts=n_calib,
                             resolution=1.0 / (n_calib + 1)))
    return pd.DataFrame(rows)


def collateral(scores: pd.DataFrame, gt: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Legitimate accounts flagged per archetype and detector at FPR alpha."""
    s = scores.merge(gt, on="account_id")
    s = s[s["campaign_id"] < 0]
    rows = []
    for arch, g in s.groupby("archetype"):
        row = {"archetype": arch, "accounts": len(g)}
        for d in ALL:
            row[f"{d}_flagged"] = int((g[f"p_{d}"] <= alpha).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def roc(scores: pd.DataFrame, gt: pd.DataFrame) -> pd.DataFrame:
    from sklearn.metrics import roc_auc_score, roc_curve

    s = scores.merge(gt, on="account_id")
    y = (s["campaign_id"] >= 0).to_numpy()
    parts = []
    for d in ALL:
        fpr, tpr, thr = roc_curve(y, s[d].to_numpy())
        parts.append(pd.DataFrame({"detector": d, "fpr": fpr, "tpr": tpr, "threshold": thr,
                                   "auc": roc_auc_score(y, s[d].to_numpy())}))
    return pd.concat(parts, ignore_index=True)


def time_to_detection(checkpoints: list[tuple[float, pd.DataFrame]], labelled_log: pd.DataFrame) -> pd.DataFrame:
    """Per campaign and detector: hours from the campaign's first request to the first checkpoint at
    which one of its accounts is flagged, and the campaign's requests sent by then (NaN: never)."""
    camp = labelled_log[labelled_log["campaign_id"] >= 0]
    start = camp.groupby("campaign_id")["timestamp"].min()
    gt = truth(labelled_log)
    # hit[T][d]: the campaigns with a flagged account at checkpoint T
    hit = [(T, sc.merge(gt, on="account_id").groupby("campaign_id")[[f"flag_{d}" for d in ALL]].any())
           for T, sc in checkpoints]
    rows = []
    for cid, t0 in start.items():
        for d in ALL:
            first = next((T for T, h in hit if cid in h.index and h.loc[cid, f"flag_{d}"]), None)
            sent = int(((camp["campaign_id"] == cid) & (camp["timestamp"] <= first)).sum()) if first else np.nan
            rows.append(dict(campaign_id=int(cid), detector=d, hours=(first - t0) / 3600 if first else np.nan,
                             requests=sent))
    return pd.DataFrame(rows)


def shift_windows(scores: pd.DataFrame, gt: pd.DataFrame, min_n: int, level: float = 0.01) -> pd.DataFrame:
    """The MMD window test read as a test: per archetype, accounts tested (>= min_n requests) and the
    share whose permutation p-value is <= level (no calibration involved)."""
    s = scores.merge(gt, on="account_id")
    s = s.assign(kind=np.where(s["campaign_id"] >= 0, "campaign", s["archetype"]), tested=s["shift_n"] >= min_n)
    t = s[s["tested"]]
    out = t.groupby("kind").agg(tested=("account_id", "size"), rejected=("shift_p", lambda p: int((p <= level).sum())))
    out["share_rejected"] = out["rejected"] / out["tested"]
    return out.reset_index()
