"""Thresholds come from legitimate calibration accounts only, never from evaluation traffic."""
import numpy as np
import pandas as pd
import pytest

from antidistill.eval.traffic import calibrate as C
from antidistill.eval.traffic.config import load
from antidistill.eval.traffic.experiment import simulate_logs
from antidistill.eval.traffic.store import read_log
from antidistill.watermark.errors import UserError


def test_threshold_flags_at_most_floor_alpha_n_calibration_accounts():
    s = np.random.default_rng(0).normal(size=2000)
    for alpha in (1e-3, 1e-2, 0.1):
        assert (s > C.threshold(s, alpha)).sum() <= int(alpha * len(s))
        assert (s > C.threshold(s, alpha)).sum() >= int(alpha * len(s)) - 1
    assert C.threshold(s, 1e-4) == s.max()  # alpha below 1/n: only accounts above every calibration account


def test_tail_pvalue_is_the_empirical_upper_tail():
    calib = np.array([1.0, 2.0, 3.0])
    assert C.tail_pvalue(calib, [0.0, 2.0, 3.5]).tolist() == [1.0, 0.75, 0.25]


def test_calibration_refuses_campaign_rows_and_shared_accounts():
    calib = pd.DataFrame({"account_id": ["a", "b"], "campaign_id": [-1, 3]})
    with pytest.raises(UserError, match="legitimate only"):
        C.check_legit_only(calib)
    with pytest.raises(UserError, match="share 1 accounts"):
        C.check_legit_only(calib.assign(campaign_id=-1), ["b", "z"])


def test_calibration_traffic_does_not_depend_on_the_evaluation_traffic(tmp_path):
    """Planting more campaigns in the evaluation leaves calibration (hence every threshold) unchanged."""
    cfg = load(preset="traffic-smoke")
    more = load(preset="traffic-smoke")
    more["sim"]["n_campaigns"], more["sim"]["accounts_per_campaign"] = 5, 30
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a, b = simulate_logs(cfg, tmp_path / "a"), simulate_logs(more, tmp_path / "b")
    ca, cb = read_log(a["calibration"]), read_log(b["calibration"])
    pd.testing.assert_frame_equal(ca, cb)
    assert (ca["campaign_id"] == -1).all()
    ea, eb = read_log(a["evaluation"]), read_log(b["evaluation"])
    assert eb["campaign_id"].max() > ea["campaign_id"].max()
    assert not set(ca["account_id"]) & set(eb["account_id"])
