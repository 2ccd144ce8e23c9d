"""The per-text rules the benchmarks compare (`per_text`, `templated`): the removed batch-drop rule,
kept only to measure it, and the library's per-text verdicts with and without a reference."""
from __future__ import annotations

import numpy as np

from ..measures.detectability import text_verdicts


def batch_drop(det, seqs, prompts) -> list:
    """The removed default (`shared="drop"`), kept here only to measure it: a text is scored on
    its own distinct tuples minus every tuple another text of the same call scores, so its
    verdict depends on the call."""
    s = det.select(seqs, prompts, per_sequence=True)
    draws, owner = s.draws.astype(np.int64), s.owner
    values, n_texts = np.unique(draws, return_counts=True)  # each (text, draw) is there once
    own = ~np.isin(draws, values[n_texts >= 2])
    scores = det.tuple_scores(s.draws[own])
    n = len(seqs)
    sums = np.bincount(owner[own], weights=scores, minlength=n)
    counts = np.bincount(owner[own], minlength=n)
    return [det.verdict(float(sums[i]), int(counts[i])) for i in range(n)]


def verdicts(det, seqs, prompts, rule: str, reference=None) -> tuple[np.ndarray, np.ndarray]:
    """log10 p and tuples scored per text under `rule`. `reference` is (texts, prompts) of
    unprotected text held out from `seqs`, or "halves": each half of `seqs` is scored with the
    other half as its reference (cross-fitting: a text never references itself)."""
    if rule == "batch-drop":
        ds = batch_drop(det, seqs, prompts)
    else:
        ds = text_verdicts(det, seqs, prompts, reference if rule == "per-text+reference" else None)
    return np.array([d.log10_p for d in ds]), np.array([d.n_scored for d in ds])
