"""Traffic simulator and log schema: seeded determinism, ground truth, held-out wrappers, one-line errors."""
import zlib

import numpy as np
import pandas as pd
import pytest

from antidistill.eval.traffic import prompts as P
from antidistill.eval.traffic.detectors import templates as T
from antidistill.eval.traffic.schema import strip_labels, validate
from antidistill.eval.traffic.simulate import SimConfig, simulate
from antidistill.watermark.errors import UserError

SMALL = dict(n_legit=300, n_campaigns=2, accounts_per_campaign=6, requests_per_account=20, days=2.0, pivot_day=1.0)


def test_simulator_is_deterministic_under_a_seed_and_differs_under_another():
    a, b = simulate(SimConfig(**SMALL, seed=5)), simulate(SimConfig(**SMALL, seed=5))
    pd.testing.assert_frame_equal(a, b)
    c = simulate(SimConfig(**SMALL, seed=6))
    assert len(a) != len(c) or not a["prompt"].equals(c["prompt"])


def test_ground_truth_and_archetypes():
    log = simulate(SimConfig(**SMALL, seed=1))
    acc = log.groupby("account_id").agg(c=("campaign_id", "nunique"), a=("archetype", "first"), cid=("campaign_id", "first"))
    assert (acc["c"] == 1).all()  # an account belongs to one campaign or none
    assert set(acc["a"]) == {"casual", "heavy", "classroom", "integrator", "campaign"}
    assert set(acc.loc[acc["cid"] >= 0, "a"]) == {"campaign"}
    # banned accounts are replaced: a campaign has more accounts than slots
    assert acc[acc["cid"] == 0].shape[0] >= SMALL["accounts_per_campaign"]
    assert log["timestamp"].is_monotonic_increasing and log["request_id"].is_unique


def test_campaigns_use_only_held_out_wrapper_families():
    log = simulate(SimConfig(**SMALL, seed=2, cover_share=0.0))
    camp = log.loc[log["campaign_id"] >= 0, "prompt"]
    for fam in P.TRAIN_FAMILIES:
        for w in P.WRAPPER_FAMILIES[fam]:
            for piece in filter(None, (s.strip() for s in w.split("{p}"))):
                assert not camp.str.contains(piece, regex=False).any(), piece
    held = [s.strip() for f in P.HELDOUT_FAMILIES for w in P.WRAPPER_FAMILIES[f] for s in w.split("{p}") if s.strip()]
    assert camp.apply(lambda p: any(h in p for h in held)).all()


def test_settings_are_checked():
    with pytest.raises(UserError, match="paraphrase_rate"):
        SimConfig(paraphrase_rate=1.5).check()
    with pytest.raises(UserError, match="wrappers"):
        SimConfig(wrappers="all").check()


def _log(**over):
    base = {"request_id": [1, 2], "account_id": ["a", "b"], "timestamp": [1767225600.0, 1767225601.0], "prompt": ["hi", "yo"],
            "model": ["m", "m"]}
    base.update(over)
    return pd.DataFrame({k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize("over, msg", [
    ({"prompt": None}, "missing column 'prompt'"),
    ({"timestamp": ["2026-01-01T00:00:00Z", "soon"]}, "column 'timestamp' at row 2"),
    ({"prompt": ["hi", ""]}, "column 'prompt' is empty at row 2"),
    ({"request_id": [7, 7]}, "repeats '7' at row 2"),
])
def test_schema_refuses_bad_logs_in_one_line(over, msg):
    with pytest.raises(UserError, match=msg) as err:
        validate(_log(**over))
    assert "\n" not in str(err.value)


def test_schema_reads_iso_times_and_keeps_optional_columns():
    log = validate(_log(timestamp=["2026-01-01T00:00:00Z", "2026-01-01T00:00:10+00:00"], network=["n1", ""]))
    assert log["timestamp"].tolist() == [1767225600.0, 1767225610.0]
    assert log["network"].isna().tolist() == [False, True]
    assert "campaign_id" not in strip_labels(simulate(SimConfig(**SMALL))).columns


def test_minhash_signatures_equal_datasketch():
    from datasketch import MinHash

    sets = [T.shingles(p) for p in ("the quick brown fox jumps over 12 dogs", "short", "a b c d e f g")]
    sig = T.signatures(sets)
    for s, row in zip(sets, sig):
        m = MinHash(num_perm=T.NUM_PERM, seed=T.SEED, hashfunc=zlib.crc32, scheme="legacy")
        m.update_batch(list(s))
        assert np.array_equal(m.hashvalues, row)
