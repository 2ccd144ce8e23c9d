"""Smoke test of the repeated-context bench: `--quick` runs end to end and writes every variant's row.

No thresholds on the figures (a handful of short texts); only the shape and the ranges are checked.
"""
import pandas as pd
import pytest

from antidistill.eval.bench import synthid_repeat as bench


@pytest.mark.slow
def test_quick_run_writes_every_variant(tmp_path):
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "synthid_repeat.csv").set_index("variant")
    assert list(df.index) == list(bench.VARIANTS)
    for k in (2, 4):
        assert df[f"rep_ctx{k}"].between(0, 1).all()
    marked = df.drop(index=["plain", "hf-synthid"])
    assert marked.tpr.between(0, 1).all() and marked.fpr.between(0, 1).all()
    assert df.loc["hf-synthid", "mean_g"] > 0 and pd.isna(df.loc["hf-synthid", "tpr"])
    text = (tmp_path / "synthid_repeat.md").read_text()
    assert "within 0.02 of the reference" in text and "python -m antidistill.eval.bench.synthid_repeat --quick" in text
