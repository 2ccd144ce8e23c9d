"""The one-key templated-text benchmark runs end to end on a small random teacher."""
import pandas as pd
import pytest

from antidistill.eval.bench.templated import ALPHAS, RULES, SCHEMES, main, run


@pytest.mark.slow
def test_bench_templated_small(tmp_path):
    res = run(tmp_path / "out", n_keys=3, n_texts=40, n_power=16, teacher="tiny", max_new_tokens=24,
              cache_dir=tmp_path / "cache", progress=False)
    fp = res["false_positives"]
    assert len(fp) == len(SCHEMES) * len(RULES) * len(ALPHAS)
    assert (fp.n_texts == 40).all() and (fp.n_keys == 3).all()
    assert ((fp.mean_ci_lo <= fp.mean_fpr) & (fp.mean_fpr <= fp.mean_ci_hi)).all()
    # a reference or the removed batch rule never scores more of a text than its own distinct tuples
    wide = fp.pivot_table(index=["scheme", "alpha"], columns="rule", values="median_n_scored")
    assert (wide["per-text+reference"] <= wide["per-text"]).all() and (wide["batch-drop"] <= wide["per-text"]).all()
    assert len(res["per_key"]) == len(SCHEMES) * len(RULES) * 3
    for name in ("templated.md", "templated.csv", "templated_per_key.csv", "templated_power.csv", "templated.json"):
        assert (tmp_path / "out" / name).is_file()
    assert "Target" in (tmp_path / "out" / "templated.md").read_text()
    assert set(pd.read_csv(tmp_path / "out" / "templated_power.csv").rule) == set(RULES)


def test_bench_templated_refuses_bad_numbers(capsys):
    assert main(["--keys", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--keys" in err[0]
