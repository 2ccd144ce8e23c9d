"""Exact tail probabilities in log space, finite far below 1e-300.

scipy's `logsf` returns log(sf) and so falls to -inf once sf underflows (about 1e-308). Where
the tail is that small we sum the pmf terms in log space instead; the terms there fall off
geometrically, so a few hundred of them give the sum to double precision.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.special import logsumexp

LN10 = math.log(10.0)
_SWITCH = -600.0  # natural log; below this scipy's value is no longer trusted (1e-260)
_REL_EPS = 1e-18


def _series_len(ratio: float, available: int) -> int:
    """Terms needed until ratio**m < 1e-18 (geometric bound on the neglected remainder)."""
    if ratio <= 0.0:
        return 1
    if ratio >= 1.0:
        return available
    return int(min(available, math.ceil(math.log(_REL_EPS) / math.log(ratio)) + 2))


def binom_log_sf(k: int, n: int, q: float) -> float:
    """ln P(X >= k) for X ~ Binomial(n, q)."""
    if k <= 0:
        return 0.0
    if k > n:
        return -math.inf
    value = float(stats.binom.logsf(k - 1, n, q))
    if value > _SWITCH:
        return value
    # Far in the upper tail: term ratio pmf(j+1)/pmf(j) = (n-j)/(j+1) * q/(1-q) is largest at j=k.
    ratio = (n - k) / (k + 1) * q / (1 - q)
    j = np.arange(k, k + _series_len(ratio, n - k + 1))
    return float(logsumexp(stats.binom.logpmf(j, n, q)))


def gamma_log_sf(x: float, n: int) -> float:
    """ln P(G >= x) for G ~ Gamma(n, 1), n a positive integer (sum of n Exp(1) variables)."""
    if n <= 0:
        return 0.0 if x <= 0 else -math.inf
    if x <= 0:
        return 0.0
    value = float(stats.gamma.logsf(x, n))
    if value > _SWITCH:
        return value
    # P(Gamma(n,1) >= x) = P(Poisson(x) <= n-1); the Poisson terms shrink by j/x going down from n-1.
    ratio = (n - 1) / x
    j = np.arange(n - 1, n - 1 - _series_len(ratio, n), -1)
    return float(logsumexp(stats.poisson.logpmf(j, x)))


def weighted_log_sf_bound(x: float, weights: np.ndarray, log_mgf) -> float:
    """Chernoff bound on ln P(sum_i w_i S_i >= x) for independent S_i with log-MGF `log_mgf`
    (vectorised, finite on [0, theta_max) of the unit-weight score) and weights w_i >= 0:

        ln P <= min_{theta > 0} -theta * x + sum_i log_mgf(theta * w_i).

    A bound, not an exact tail: valid (never below the true tail) for any weights; for equal
    weights it is within a factor of about sqrt(n) of the exact binomial / Gamma tail. The
    objective is convex in theta; it is minimised over log(theta) (unimodal there too)."""
    from scipy.optimize import minimize_scalar

    w = np.asarray(weights, dtype=float)
    w = w[w > 0]
    if len(w) == 0:
        return 0.0 if x <= 0 else -math.inf
    w_max = float(w.max())
    theta_max = getattr(log_mgf, "theta_max", math.inf)
    hi = math.log(theta_max / w_max * (1 - 1e-9)) if math.isfinite(theta_max) else math.log(200.0 / w.min())

    def objective(u: float) -> float:
        theta = math.exp(u)
        return -theta * x + float(np.sum(log_mgf(theta * w)))

    lo = hi - 40.0
    res = minimize_scalar(objective, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    return min(0.0, float(res.fun), objective(hi))


def lattice_log_sf(x: float, weights: np.ndarray, trials: int, q: float) -> float | None:
    """Exact ln P(sum_i w_i S_i >= x) for independent S_i ~ Binomial(trials, q) (a green bit:
    trials = 1; SynthID's g-values: trials = depth, q = 1/2) and non-negative integer weights w_i.
    The tuples of weight c together give c * Binomial(n_c * trials, q); their pmfs are convolved.
    None when the weights are not integers, the support is too large, or the tail underflows (the
    caller then falls back to `weighted_log_sf_bound`)."""
    w = np.asarray(weights, dtype=float)
    if len(w) == 0 or not np.all(w == np.round(w)):
        return None
    w = w[w > 0].astype(np.int64)
    if int(w.sum()) * trials > 1_000_000:
        return None
    pmf = np.ones(1)
    values, counts = np.unique(w, return_counts=True)
    for c, n in zip(values.tolist(), counts.tolist()):
        m = n * trials
        spread = np.zeros(m * c + 1)
        spread[::c] = stats.binom.pmf(np.arange(m + 1), m, q)
        pmf = np.convolve(pmf, spread)
    start = max(0, int(math.ceil(x - 1e-9)))
    tail = float(pmf[start:].sum()) if start < len(pmf) else 0.0
    if tail <= 1e-300:
        return None
    return min(0.0, math.log(tail))
