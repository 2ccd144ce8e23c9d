"""Exact tails stay exact (and finite) far below 1e-300."""
import math

import mpmath
import pytest
from scipy import stats

from antidistill.watermark.stats import binom_log_sf, gamma_log_sf

mpmath.mp.dps = 50


def mp_binom_sf(k, n, q):
    return mpmath.log(mpmath.fsum(mpmath.binomial(n, j) * mpmath.mpf(q) ** j * (1 - mpmath.mpf(q)) ** (n - j)
                                  for j in range(k, n + 1)))


@pytest.mark.parametrize("k, n, q", [(0, 10, 0.3), (3, 10, 0.25), (60, 200, 0.25), (150, 200, 0.25),
                                     (200, 200, 0.25), (480, 500, 0.25), (900, 1000, 0.5), (1, 1, 0.5)])
def test_binomial_tail_matches_high_precision(k, n, q):
    assert binom_log_sf(k, n, q) == pytest.approx(float(mp_binom_sf(k, n, q)), rel=1e-9, abs=1e-12)


def test_binomial_tail_far_below_double_range():
    n = 5000
    value = binom_log_sf(n, n, 0.25)
    assert math.isfinite(value) and value == pytest.approx(n * math.log(0.25), rel=1e-12)
    assert value / math.log(10) < -3000
    assert binom_log_sf(n + 1, n, 0.25) == -math.inf


@pytest.mark.parametrize("x, n", [(0.5, 1), (5.0, 3), (120.0, 100), (400.0, 100), (3000.0, 1000), (20000.0, 100)])
def test_gamma_tail_matches_high_precision(x, n):
    want = float(mpmath.log(mpmath.gammainc(n, x, mpmath.inf, regularized=True)))
    assert gamma_log_sf(x, n) == pytest.approx(want, rel=1e-9)


def test_gamma_tail_below_1e_minus_300_is_finite_and_monotone():
    a, b = gamma_log_sf(5000.0, 100), gamma_log_sf(5001.0, 100)
    assert math.isfinite(a) and a / math.log(10) < -1000 and b < a
    assert stats.gamma.logsf(5000.0, 100) == -math.inf  # what we guard against
