"""P3: a reading-mode audit's time over a plain forward pass of the suspect on the same tokens.

    python -m antidistill.eval.bench.reading [--quick] [--out results/bench]

The audit teacher-forces the protected texts through the suspect, takes its top-1 prediction at
every completion position, pairs it with the text's window, hashes, deduplicates and takes the
exact tail (`reading_tuples` + `score`). The forward pass is unavoidable; everything else is ours.
Both run side by side on the same texts and model (SmolLM2-135M's shape, random weights, no
download), alternating order, and the medians are compared. Target: ratio <= 1.10.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from antidistill.watermark import Key, parse_protection

from ..measures.audit import reading_tuples, score
from .watermark import VOCAB, build_model, log

TARGET = 1.10
SPECS = ("kgw:gamma=0.25,delta=2,h=1,hash=left", "unigram:gamma=0.5,delta=2", "gumbel:h=2", "synthid:depth=16,h=4")


def run(quick: bool = False, seed: int = 0) -> pd.DataFrame:
    model_name = "tiny-2x64" if quick else "smollm2-135m-shape"
    n_texts, prompt_len, completion_len, repeats = (4, 8, 32, 2) if quick else (16, 16, 256, 5)
    model = build_model(model_name)
    rng = np.random.default_rng(seed)
    texts = [(rng.integers(3, VOCAB, prompt_len).tolist(), rng.integers(3, VOCAB, completion_len).tolist())
             for _ in range(n_texts)]
    ids = torch.tensor([p + c for p, c in texts])
    mask = torch.ones_like(ids)
    key = Key.from_text("antidistill bench P3")
    detectors = [parse_protection(s).detector(key) for s in SPECS]

    @torch.no_grad()
    def forward():
        model(input_ids=ids, attention_mask=mask).logits.argmax(-1)

    def audit(det):
        score(det, reading_tuples(model, texts, det.h, batch_size=n_texts), mode="reading")

    jobs = [("forward", forward)] + [(d.scheme, lambda d=d: audit(d)) for d in detectors]
    for _, fn in jobs:  # warm-up
        fn()
    times = {name: [] for name, _ in jobs}
    for r in range(repeats):
        order = jobs[r % len(jobs):] + jobs[:r % len(jobs)]
        for name, fn in order:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        log(f"P3: repeat {r + 1}/{repeats}")
    base = float(np.median(times["forward"]))
    rows = []
    for name, _ in jobs:
        med = float(np.median(times[name]))
        rows.append({"bench": "P3", "model": model_name, "variant": name, "tokens": int(ids.numel()),
                     "repeats": repeats, "median_s": med, "ratio_to_forward": med / base,
                     "target": f"<= {TARGET:.2f}" if name != "forward" else "",
                     "meets_target": None if quick or name == "forward" else bool(med / base <= TARGET)})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m antidistill.eval.bench.reading", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, two repeats (a smoke test)")
    parser.add_argument("--out", default="results/bench", help="output folder (default results/bench)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    df = run(args.quick)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "reading.csv", index=False)
    lines = ["# P3: reading-mode audit time / plain forward pass", "",
             f"`python -m antidistill.eval.bench.reading{' --quick' if args.quick else ''}`; "
             f"{time.perf_counter() - t0:.0f} s wall; medians over alternating repeats on one machine.", "",
             "| variant | model | tokens | median s | ratio to forward | target | met |", "|---|---|---:|---:|---:|---|---|"]
    for r in df.itertuples():
        met = "" if r.meets_target is None else ("yes" if r.meets_target else "no")
        lines.append(f"| {r.variant} | {r.model} | {r.tokens} | {r.median_s:.3f} | {r.ratio_to_forward:.3f} | "
                     f"{r.target} | {met} |")
    (out / "reading.md").write_text("\n".join(lines) + "\n")
    log(f"P3 done: wrote {out / 'reading.csv'} and {out / 'reading.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
