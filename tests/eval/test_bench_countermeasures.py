"""Smoke test of the countermeasure benchmark: `--quick` runs end to end and writes the expected rows.

No timing thresholds (figures depend on the machine); only the shape of the results is checked.
"""
import pandas as pd

from antidistill.eval.bench import countermeasures as bench


def test_quick_run_writes_ratios_and_floors(tmp_path):
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0  # (--threads would leak into other tests)
    df = pd.read_csv(tmp_path / "countermeasures.csv").set_index("variant")
    assert set(df.index) == {"plain", "ads", "poe"}
    assert df.loc["plain", "ratio"] == 1.0 and (df.ratio > 0).all() and (df.median_cpu_s > 0).all()
    assert list(df.extra_forwards) == [0, 2, 1]
    f = df.loc["ads", "forward_ratio"]
    assert df.loc["ads", "floor"] == 1 + 2 * f and df.loc["poe", "floor"] == 1 + f
    assert "floor" in (tmp_path / "countermeasures.md").read_text()
