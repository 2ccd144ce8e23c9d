"""An all-legitimate log split in two by account: the FPR each detector and the combined score deliver
is the one they state (issue 17). The evaluated half's flags are all false positives.

The bound asserted is the exact law of the flag count under exchangeability (calibrate.flag_count_bound:
negative hypergeometric, 99.9%): every evaluated account is compared with the same calibration set, so
the count varies more than Binomial(N, alpha); a valid procedure exceeds the binomial 99.9% bound in
about 1-2% of (detector, alpha, seed) cells at these sizes, so asserting it would make a correct method
fail now and then. The binomial bound is reported beside it (results/traffic/report.md)."""
import warnings

import pytest

from antidistill.eval.traffic import calibrate as C
from antidistill.eval.traffic.null_split import null_split

SIM = dict(days=3.0, pivot_day=1.5)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_legitimate_split_flags_within_the_bound(seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = null_split(seed, 800, [1e-2, 5e-2], {"mmd_perm": 50}, SIM)
    assert len(t) == 10 and (t["calib_accounts"] >= 290).all() and (t["eval_accounts"] >= 390).all()
    bad = t[t["flagged"] > t["exact_bound"]]
    assert bad.empty, bad.to_string()


def test_the_exact_count_bound_is_wider_than_the_binomial_one():
    binom, exact = C.flag_count_bound(1200, 900, 0.01)
    assert (binom, exact) == (24, 33)
    assert C.flag_count_bound(1000, 10, 0.01) == (int(C.flag_count_bound(1000, 10, 0.01)[0]), 0)  # unresolvable
