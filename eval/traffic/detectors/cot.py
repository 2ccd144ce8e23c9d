"""Chain-of-thought elicitation classifier: word + character n-gram TF-IDF, logistic regression.

Trained on the defender's labelled examples: positives are legitimate prompts wrapped in the
*training* wrapper families of prompts.py, negatives are legitimate prompts (including ordinary
users asking for steps in their own words). Campaigns in the evaluation use the *held-out* families,
so what is measured is recognition of wrapper phrasings the classifier never saw.

Account score: with a request-level cut set on calibration requests at rate p0 (calibrate.py), an
account with k flagged requests out of n scores -log10 P(Binomial(n, p0) >= k), so one flagged
request among many is ordinary and a steady stream of them is not.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .. import prompts as P
from ..features import FLAG_COUNT_SQL, query
from ..memo import PromptMemo
from ..schema import require_unlabelled


class CotClassifier:
    """fit(legitimate prompts), then proba(prompts): P(CoT elicitation), once per distinct prompt."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, legit_prompts: np.ndarray) -> "CotClassifier":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline, make_union

        rng = np.random.default_rng(self.seed)
        neg = np.asarray(legit_prompts, dtype=object)
        base = neg[rng.permutation(len(neg))[: max(len(neg) // 2, 1)]]
        wraps = [w for f in P.TRAIN_FAMILIES for w in P.WRAPPER_FAMILIES[f]]
        pos = np.array([wraps[i].replace("{p}", b) for i, b in zip(rng.integers(len(wraps), size=len(base)), base)],
                       dtype=object)
        features = make_union(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                              TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=3, sublinear_tf=True,
                                              max_features=50_000))
        self.model = make_pipeline(features, LogisticRegression(C=4.0, max_iter=1000))
        self.model.fit(np.concatenate([pos, neg]), np.r_[np.ones(len(pos)), np.zeros(len(neg))])

        self.proba = PromptMemo(lambda ps: self.model.predict_proba(ps)[:, 1])
        return self


def account_scores(log: pd.DataFrame, proba: np.ndarray, cut: float, p0: float, con) -> pd.DataFrame:
    """account_id, n, k (flagged requests), score = -log10 P(Bin(n, p0) >= k)."""
    require_unlabelled(log)
    flags = pd.DataFrame({"request_id": log["request_id"].to_numpy(), "flag": (proba > cut).astype(np.int64)})
    out = query(con, FLAG_COUNT_SQL, log[["request_id", "account_id"]], flags=flags)
    k, n = out["k"].to_numpy(dtype=float), out["n"].to_numpy(dtype=float)
    out["score"] = np.where(k > 0, -stats.binom.logsf(k - 1, n, p0) / np.log(10), 0.0)
    return out
