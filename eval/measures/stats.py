"""Small exact statistics shared by the evaluators: paired tests, intervals, ROC, TPR at fixed FPR.

Everything here is a pure function of arrays, so each has a test with an answer computable by hand.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats


def paired_exact_test(a, b) -> dict:
    """Exact two-sided McNemar test on paired binary outcomes (e.g. per-item correctness).

    Only discordant pairs carry information: `a_only` items where a is right and b wrong, `b_only`
    the reverse. Under H0 (same accuracy) a_only ~ Binomial(a_only + b_only, 1/2); the two-sided
    p-value is min(1, 2 * P(X <= min(a_only, b_only))).
    """
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes need equal shapes, got {a.shape} and {b.shape}")
    a_only = int(np.sum(a & ~b))
    b_only = int(np.sum(~a & b))
    n = a_only + b_only
    p = 1.0 if n == 0 else min(1.0, 2.0 * float(stats.binom.cdf(min(a_only, b_only), n, 0.5)))
    return {"n_pairs": int(a.size), "a_only": a_only, "b_only": b_only, "p_value": p}


def clopper_pearson(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval for k successes in n trials."""
    if n == 0:
        return (float("nan"), float("nan"))
    a = 1.0 - conf
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def bootstrap_ci(values, stat=np.mean, n_boot: int = 2000, conf: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat` over the items of `values` (1-D)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    boots = np.apply_along_axis(stat, 1, values[idx]) if stat is not np.mean else values[idx].mean(axis=1)
    a = (1.0 - conf) / 2
    return float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


def tpr_at_alpha(pos_log10_p, neg_log10_p, alpha: float) -> dict:
    """Detection rates at a fixed significance level: a text is flagged when its exact p < alpha.

    No threshold is fitted: alpha is the nominal false-positive rate, and the empirical FPR on the
    held-out negatives is reported beside the TPR (with its exact interval) to show it holds.
    """
    pos = np.asarray(pos_log10_p, dtype=float)
    neg = np.asarray(neg_log10_p, dtype=float)
    cut = math.log10(alpha)
    k_fp = int(np.sum(neg < cut))
    lo, hi = clopper_pearson(k_fp, neg.size)
    return {"alpha": alpha, "tpr": float(np.mean(pos < cut)) if pos.size else float("nan"),
            "fpr": k_fp / neg.size if neg.size else float("nan"), "fpr_lo": lo, "fpr_hi": hi}


def roc_auc(pos_scores, neg_scores) -> float:
    """P(score_pos > score_neg) + P(tie)/2 (Mann-Whitney), higher score = more watermarked."""
    pos = np.asarray(pos_scores, dtype=float)
    neg = np.asarray(neg_scores, dtype=float)
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))


def roc_curve(pos_scores, neg_scores) -> pd.DataFrame:
    """ROC points (fpr, tpr) over every threshold, from (0, 0) to (1, 1)."""
    pos = np.asarray(pos_scores, dtype=float)
    neg = np.asarray(neg_scores, dtype=float)
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]
    tpr = [(pos >= t).mean() if pos.size else 0.0 for t in thresholds]
    fpr = [(neg >= t).mean() if neg.size else 0.0 for t in thresholds]
    return pd.DataFrame({"fpr": [0.0, *fpr, 1.0], "tpr": [0.0, *tpr, 1.0],
                         "threshold": [np.inf, *thresholds, -np.inf]})


def next_token_entropy(sequences) -> float:
    """H(token | previous token) in bits, the plug-in estimate from the bigrams pooled over `sequences`.

    How much of each choice the previous token leaves open: a sampler whose pick is a fixed function
    of the previous token (Gumbel or KGW with h = 1) lowers it, and a student then has less to learn.
    """
    pairs = [np.stack([s[:-1], s[1:]], axis=1) for s in map(np.asarray, sequences) if len(s) > 1]
    if not pairs:
        return float("nan")
    pairs = np.concatenate(pairs)

    def entropy(counts):
        q = counts / counts.sum()
        return float(-(q * np.log2(q)).sum())

    # H(next | prev) = H(prev, next) - H(prev)
    return entropy(np.unique(pairs, axis=0, return_counts=True)[1]) - entropy(np.unique(pairs[:, 0], return_counts=True)[1])


def distinct_n(sequences, n: int) -> float:
    """Distinct n-grams / total n-grams, pooled over sequences of token ids (diversity)."""
    total, seen = 0, set()
    for seq in sequences:
        seq = list(seq)
        grams = [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else float("nan")
