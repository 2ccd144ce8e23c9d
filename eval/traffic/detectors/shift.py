"""Distribution shift per account window: MMD against legitimate reference traffic.

Embedding: TF-IDF (word 1-2 grams) fitted on legitimate training traffic, reduced to 64 dimensions
(TruncatedSVD) and L2-normalised; offline, no model download. Kernel: Gaussian with the median
pairwise distance of the reference as bandwidth. For each account with >= `min_n` requests, its
first `window` requests X are compared with a fixed reference sample Y of legitimate requests by the
biased MMD^2 statistic, and X u Y is permuted `n_perm` times (all permutations at once: MMD^2 of a
split is a^T K a for a +-1/n weight vector a, so K @ A does every permutation in one product).

p-value: the Monte-Carlo permutation p-value (b + 1) / (m + 1), b of m permuted statistics >= the
observed one; exact in the permutation sense (valid at every level for any m), with resolution
1 / (m + 1). Account score: z = (MMD^2 - mean of the permuted) / their standard deviation, a
continuous statistic comparable across window sizes (p saturates at 1 / (m + 1)). Accounts with
fewer than `min_n` requests are not tested (score 0, p = 1).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..memo import PromptMemo
from ..schema import require_unlabelled


class ShiftTest:
    def __init__(self, window: int = 50, ref_size: int = 200, n_perm: int = 200, min_n: int = 5, seed: int = 0):
        self.window, self.ref_size, self.n_perm, self.min_n, self.seed = window, ref_size, n_perm, min_n, seed

    def fit(self, legit_prompts) -> "ShiftTest":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline

        rng = np.random.default_rng(self.seed)
        prompts = np.asarray(legit_prompts, dtype=object)
        self.embedder = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                                      TruncatedSVD(64, random_state=self.seed)).fit(prompts)
        self.embed = PromptMemo(self._embed)
        ref = prompts[rng.choice(len(prompts), size=min(self.ref_size, len(prompts)), replace=False)]
        self.Y = self.embed(ref)
        d2 = _sqdist(self.Y, self.Y)
        self.gamma = 1.0 / np.median(d2[np.triu_indices(len(self.Y), 1)])
        self.Kyy = np.exp(-self.gamma * d2)
        return self

    def _embed(self, prompts) -> np.ndarray:
        z = self.embedder.transform(prompts)
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    def test(self, X: np.ndarray, rng) -> tuple[float, float, float]:
        """(MMD^2, permutation p-value, z) of window X against the reference."""
        nx_, ny = len(X), len(self.Y)
        K = np.empty((nx_ + ny, nx_ + ny))
        K[:nx_, :nx_] = np.exp(-self.gamma * _sqdist(X, X))
        K[:nx_, nx_:] = np.exp(-self.gamma * _sqdist(X, self.Y))
        K[nx_:, :nx_] = K[:nx_, nx_:].T
        K[nx_:, nx_:] = self.Kyy
        a = np.r_[np.full(nx_, 1.0 / nx_), np.full(ny, -1.0 / ny)]
        A = np.stack([a] + [a[rng.permutation(nx_ + ny)] for _ in range(self.n_perm)], axis=1)
        mmd = np.einsum("ij,ij->j", K @ A, A)
        obs, perm = mmd[0], mmd[1:]
        p = (1 + np.count_nonzero(perm >= obs)) / (self.n_perm + 1)
        return float(obs), float(p), float((obs - perm.mean()) / max(perm.std(), 1e-12))

    def scores(self, log: pd.DataFrame) -> pd.DataFrame:
        """account_id, n_window, mmd2, p_value, score (z)."""
        require_unlabelled(log)
        rng = np.random.default_rng(self.seed)
        df = log[["account_id", "timestamp", "prompt"]].sort_values(["account_id", "timestamp"], kind="stable")
        df = df[df.groupby("account_id").cumcount() < self.window]
        emb = self.embed(df["prompt"].to_numpy())
        acc = df["account_id"].to_numpy()
        starts = np.r_[0, np.flatnonzero(acc[1:] != acc[:-1]) + 1, len(acc)]
        rows = []
        for lo, hi in zip(starts[:-1], starts[1:]):  # one test per account: a (window + ref)^2 block
            if hi - lo < self.min_n:
                rows.append((acc[lo], hi - lo, 0.0, 1.0, 0.0))
            else:
                rows.append((acc[lo], hi - lo, *self.test(emb[lo:hi], rng)))
        return pd.DataFrame(rows, columns=["account_id", "n_window", "mmd2", "p_value", "score"])


def _sqdist(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    return np.maximum((X * X).sum(1)[:, None] + (Y * Y).sum(1)[None, :] - 2 * X @ Y.T, 0.0)
