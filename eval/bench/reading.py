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
    n_texts, prompt_len, completion_len, repeats = (4, 8, 32, 2) if quick else (4, 16, 112, 4)
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

    forward()  # warm-up
    for det in detectors:
        audit(det)
    # Paired: each audit beside its own forward pass, in alternating order, so that load from other
    # processes hits both sides of a ratio alike; the median ratio is reported.
    times = {d.scheme: [] for d in detectors}
    base = {d.scheme: [] for d in detectors}
    for r in range(repeats):
        for det in detectors:
            pair = [("forward", forward), ("audit", lambda det=det: audit(det))]
            for name, fn in (pair if r % 2 == 0 else pair[::-1]):
                t0 = time.perf_counter()
                fn()
                (base if name == "forward" else times)[det.scheme].append(time.perf_counter() - t0)
        log(f"P3: repeat {r + 1}/{repeats}")
    rows = []
    for det in detectors:
        ratio = float(np.median(np.array(times[det.scheme]) / np.array(base[det.scheme])))
        rows.append({"bench": "P3", "model": model_name, "variant": det.scheme, "tokens": int(ids.numel()),
                     "repeats": repeats, "median_forward_s": float(np.median(base[det.scheme])),
                     "median_audit_s": float(np.median(times[det.scheme])), "median_ratio": ratio,
                     "target": f"<= {TARGET:.2f}", "meets_target": None if quick else bool(ratio <= TARGET)})
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
             f"{time.perf_counter() - t0:.0f} s wall; each audit timed beside its own forward pass, order alternating.", "",
             "| audit of | model | tokens | forward s | audit s | audit / forward (median of pairs) | target | met |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for r in df.itertuples():
        met = "" if r.meets_target is None else ("yes" if r.meets_target else "no")
        lines.append(f"| {r.variant} | {r.model} | {r.tokens} | {r.median_forward_s:.3f} | {r.median_audit_s:.3f} | "
                     f"{r.median_ratio:.3f} | {r.target} | {met} |")
    (out / "reading.md").write_text("\n".join(lines) + "\n")
    log(f"P3 done: wrote {out / 'reading.csv'} and {out / 'reading.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
