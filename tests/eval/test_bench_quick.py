"""Smoke test of the watermark benchmark: `--quick` runs end to end and writes the expected rows.

No timing thresholds: the figures depend on the machine; only the shape of the results is checked.
"""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from antidistill.eval.bench import watermark as bench
from antidistill.watermark import parse_protection


@pytest.mark.slow
def test_bench_quick_writes_expected_rows(tmp_path):
    out = tmp_path / "bench"
    # One thread: the smoke test must not depend on (or suffer from) other load on the cores.
    proc = subprocess.run([sys.executable, "-m", "antidistill.eval.bench.watermark", "--quick", "--threads", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(out / "watermark.csv")
    specs = {parse_protection(s).spec for s in bench.SPECS}

    p1 = df[df.bench == "P1"]
    assert set(p1.model) == {"tiny-2x64"}
    assert set(p1.variant) == {"plain", "hf-lefthash", "hf-selfhash", "hf-synthid"} | specs
    assert (p1.loc[p1.variant == "plain", "ratio"] == 1.0).all()
    assert (p1.median_s > 0).all() and p1.ratio.notna().all()
    # the time inside each watermark processor was captured (transformers' ones included)
    assert (p1.loc[p1.variant != "plain", "processor_s"] > 0).all()
    assert (p1.ratio_inside >= 1.0).all()
    runs = pd.read_csv(out / "watermark_runs.csv")
    assert set(runs.variant) == set(p1.variant) and len(runs) == int(p1.repeats.sum())

    step = df[df.bench == "P1-step"]
    assert specs | {"hf-lefthash", "hf-selfhash", "hf-synthid"} <= set(step.variant)

    p2 = df[df.bench == "P2"]
    assert set(p2.variant) == specs | {"hf-WatermarkDetector-lefthash"}
    assert (p2.tokens_per_s > 0).all()
    ours = p2[p2.implementation == "antidistill"]
    assert (ours.tokens == 200 * 100).all()
    assert (ours.n_scored > 0).all() and (ours.n_scored <= ours.tokens).all()

    md = (out / "watermark.md").read_text()
    for needle in ("P1", "P2", "top_k=0", "torch", "transformers", "--quick"):
        assert needle in md
