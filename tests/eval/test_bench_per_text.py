"""The per-text benchmark: the removed batch rule it measures, and a small end-to-end run."""
import numpy as np
import pandas as pd
import pytest

from antidistill.eval.bench.per_text import KGW, RULES, main, run
from antidistill.eval.bench.rules import batch_drop, verdicts
from antidistill.watermark import Key, parse_protection


def test_the_removed_batch_rule_depended_on_the_batch_and_the_new_one_does_not():
    det = parse_protection(KGW).detector(Key(b"k"))
    rng = np.random.default_rng(0)
    common = rng.integers(0, 1000, 40).tolist()
    texts = [common + rng.integers(0, 1000, 20).tolist() for _ in range(3)]
    prompts = [[] for _ in texts]
    alone = batch_drop(det, texts[:1], prompts[:1])[0]
    together = batch_drop(det, texts, prompts)[0]
    assert together.n_scored < alone.n_scored  # the same text lost its shared tuples in a batch
    lp_alone, n_alone = verdicts(det, texts[:1], prompts[:1], "per-text")
    lp_batch, n_batch = verdicts(det, texts, prompts, "per-text")
    assert (lp_alone[0], n_alone[0]) == (lp_batch[0], n_batch[0]) == (alone.log10_p, alone.n_scored)
    # cross-fitted reference: each half is scored against the other half, never against itself
    lp, n = verdicts(det, texts + texts, prompts + prompts, "per-text+reference", "halves")
    assert (n == 0).all()  # every text is in the other half


@pytest.mark.slow
def test_bench_per_text_small_random_kind(tmp_path):
    res = run(tmp_path / "out", kinds=["random"], n_keys=2, tf_keys=1, natural=(2, 2), random_=(8, 16),
              demo=(2, 2, 2), cache_dir=tmp_path / "cache", progress=False)
    fpr, tpr = res["fpr"], res["tpr"]
    assert set(fpr[fpr.detector == "antidistill"].rule) == set(RULES)
    assert {"transformers", "transformers (ignore_repeated_ngrams)"} <= set(tpr.detector)
    assert ((fpr.mean_lo <= fpr.mean_fpr) & (fpr.mean_fpr <= fpr.mean_hi)).all()
    assert set(tpr[tpr.detector == "antidistill"].length.astype(str)) == {"full", "25", "50", "100", "200"}
    for name in ("per_text.md", "per_text.csv", "per_text_family.csv", "per_text_targets.csv", "per_text.json"):
        assert (tmp_path / "out" / name).is_file()
    assert "Targets" in (tmp_path / "out" / "per_text.md").read_text()
    assert list(pd.read_csv(tmp_path / "out" / "per_text_targets.csv").kind) == ["random"]
    # a second run reads the measured kind from the cache
    again = run(tmp_path / "out2", kinds=["random"], n_keys=2, tf_keys=1, natural=(2, 2), random_=(8, 16),
                demo=(2, 2, 2), cache_dir=tmp_path / "cache", progress=False)
    assert again["meta"]["measure_seconds"] == res["meta"]["measure_seconds"]


@pytest.mark.parametrize("args, message", [(["--kinds", "poetry"], "--kinds: unknown kind poetry"),
                                           (["--natural", "64"], "--natural must be 2 comma-separated"),
                                           (["--natural", "64,400"], "at most 300")])
def test_bench_per_text_refuses_bad_arguments(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
