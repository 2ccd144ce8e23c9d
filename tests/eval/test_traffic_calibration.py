"""Thresholds come from legitimate calibration accounts only, never from evaluation traffic."""
import numpy as np
import pandas as pd
import pytest

from antidistill.eval.traffic import calibrate as C
from antidistill.eval.core.config import overlay
from antidistill.eval.traffic.config import PRESETS, TrafficConfig, load
from antidistill.eval.traffic.experiment import simulate_logs
from antidistill.eval.traffic.store import read_log
from antidistill.watermark.errors import UserError


def test_threshold_and_pvalue_agree_and_flag_at_most_floor_alpha_n_plus_1_minus_1_calibration_accounts():
    s = np.random.default_rng(0).normal(size=2000)
    for alpha in (1e-3, 1e-2, 0.1):
        t, m = C.threshold(s, alpha), int(np.floor(alpha * (len(s) + 1)))
        assert ((s > t) == (C.pvalue(s, s + 0.0) - 1 / (len(s) + 1) <= alpha - 1 / (len(s) + 1) + 1e-12)).all()
        assert (s > t).sum() == m - 1  # the m-th largest is the threshold, flagged: strictly above
        x = np.random.default_rng(1).normal(size=5000)  # fresh exchangeable scores: flags iff p <= alpha
        assert ((x > t) == (C.pvalue(s, x) <= alpha)).all()


def test_alpha_below_the_resolution_is_refused_in_one_line():
    s = np.arange(999.0)
    with pytest.raises(UserError, match=r"below the resolution 1/\(n\+1\) = 0.001 of 999 calibration accounts"):
        C.threshold(s, 9.99e-4)
    C.check_alpha(1e-3, 999)  # 1/(n+1) exactly: resolvable


def test_pvalue_is_the_conformal_upper_tail():
    calib = np.array([1.0, 2.0, 3.0])
    assert C.pvalue(calib, [0.0, 2.0, 3.5]).tolist() == [1.0, 0.75, 0.25]


def test_combined_min_p_is_calibrated_on_its_own_null():
    """Independent uniform detectors, exchangeable accounts: min-p as a p-value would flag about 4 alpha;
    the calibrated combination flags alpha (its mean over many calibration sets, the exact law's mean)."""
    rng = np.random.default_rng(0)
    n, N, alpha, k = 400, 4000, 0.05, 4
    naive, calibrated = [], []
    for _ in range(20):
        cal = {d: rng.random(n) for d in range(k)}
        ev = {d: rng.random(N) for d in range(k)}
        p, _ = C.min_p(cal, ev)
        naive.append((np.min([C.pvalue(cal[d], ev[d]) for d in range(k)], axis=0) <= alpha).mean())
        calibrated.append((p <= alpha).mean())
    assert np.mean(naive) > 3 * alpha
    m = int(np.floor(alpha * (n + 1)))
    assert m / (n + 1) - 0.006 < np.mean(calibrated) <= m / (n + 1) + 0.006  # sd of the mean over 20 sets ~ 0.0024


def test_references_with_campaign_rows_or_shared_accounts_are_refused():
    calib = pd.DataFrame({"account_id": ["a", "b"], "campaign_id": [-1, 3]})
    with pytest.raises(UserError, match="legitimate only: row 2 has campaign_id 3"):
        C.check_legit_only(calib)
    with pytest.raises(UserError, match="share 1 accounts"):
        C.check_legit_only(calib.assign(campaign_id=-1), ["b", "z"])


def test_calibration_traffic_does_not_depend_on_the_evaluation_traffic(tmp_path):
    """Planting more campaigns in the evaluation leaves calibration (hence every threshold) unchanged."""
    cfg = load(preset="traffic-smoke")
    more = overlay(TrafficConfig, PRESETS["traffic-smoke"], {"sim": {"n_campaigns": 5, "accounts_per_campaign": 30}})
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a, b = simulate_logs(cfg, tmp_path / "a"), simulate_logs(more, tmp_path / "b")
    ca, cb = read_log(a["calibration"]), read_log(b["calibration"])
    pd.testing.assert_frame_equal(ca, cb)
    assert (ca["campaign_id"] == -1).all()
    ea, eb = read_log(a["evaluation"]), read_log(b["evaluation"])
    assert eb["campaign_id"].max() > ea["campaign_id"].max()
    assert not set(ca["account_id"]) & set(eb["account_id"])
