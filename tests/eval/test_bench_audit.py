"""The null-audit benchmark runs and its valid (default) variants stay calibrated on a small run."""
import pytest

from antidistill.eval.bench.audit import run


@pytest.mark.slow
def test_bench_audit_small(tmp_path):
    table = run(n_keys=12, n_texts=4, new_tokens=16, out=tmp_path, progress=False)
    assert {"setting", "scheme", "variant", "fpr", "fpr_lo", "fpr_hi", "valid"} <= set(table.columns)
    default = table[table.variant == "default"]
    # 3 schemes x 3 clean suspects in reading mode, 3 schemes x 3 decodings in generation mode
    assert len(default) == 18 and (default.n_audits == 12).all()
    assert default.valid.all()  # FPR <= alpha within its exact interval
    assert table[table.variant.isin(["contrast", "fresh-window", "unseen-tuple"])].valid.all()
    assert set(table.setting) >= {"reading/right key/clean avoider", "reading/right key/clean copier"}
    assert (tmp_path / "audit_null.md").is_file() and (tmp_path / "audit_null.csv").is_file()
