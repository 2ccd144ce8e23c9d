"""Watermark neutralization at decoding time, in the spirit of Pan et al. 2025.

The attacker does not know the key. It samples its own student and a clean reference model (one
never trained on protected outputs) on the same prompts, counts (context, token) tuples of width
h, and flags the tuples the student uses more often than the reference, given the context:

    b(c, t) = max(0, log p_student(t | c) - log p_reference(t | c) - margin),   count_student(c, t) >= min_count,

(add-1/2 smoothed conditional frequencies). A learned KGW / unigram bias shows up exactly there.
At decoding, `NeutralizeProcessor` subtracts strength * b(c, t) from the logits of token t after
context c, one sparse row per sequence and step (no loop over tokens).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from transformers import LogitsProcessor

from antidistill.watermark.detection import extract_windows

from ..models.sampling import generate_batch


class NeutralizeProcessor(LogitsProcessor):
    """Subtracts a sparse (context token -> token) penalty from the logits (h = 1), or a per-token
    penalty (h = 0)."""

    def __init__(self, penalty: torch.Tensor, h: int):
        self.h = h
        self.penalty = penalty.coalesce() if penalty.is_sparse else penalty

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.h == 0:
            return scores - self.penalty.to(scores.device, scores.dtype)
        rows = self.penalty.index_select(0, input_ids[:, -1].cpu()).to_dense()
        return scores - rows.to(scores.device, scores.dtype)

    @property
    def n_flagged(self) -> int:
        return int(self.penalty._nnz()) if self.penalty.is_sparse else int((self.penalty > 0).sum())


def tuple_counts(completions, prompts, h: int) -> pd.Series:
    """Counts of (context, token) tuples of the completions (windows may reach into the prompt)."""
    comp, _ = extract_windows(completions, prompts, h)
    ctx = comp.contexts[:, -1] if h else np.zeros(len(comp.tokens), dtype=np.int64)
    return pd.Series(1, index=pd.MultiIndex.from_arrays([ctx, comp.tokens], names=["ctx", "tok"])) \
        .groupby(level=[0, 1]).sum()


def bias_table(student_counts: pd.Series, reference_counts: pd.Series, *, min_count: int = 2,
               margin: float = 0.5, smoothing: float = 0.5) -> pd.Series:
    """b(c, t) > 0 for the tuples the student over-uses relative to the reference (see module doc)."""
    s = student_counts[student_counts >= min_count]
    if s.empty:
        return s.astype(float)
    r = reference_counts.reindex(s.index, fill_value=0)
    s_tot = student_counts.groupby(level=0).sum().reindex(s.index.get_level_values(0)).to_numpy()
    r_tot = reference_counts.groupby(level=0).sum().reindex(s.index.get_level_values(0), fill_value=0).to_numpy()
    support = len(student_counts.index.get_level_values(1).union(reference_counts.index.get_level_values(1)))
    log_s = np.log((s.to_numpy() + smoothing) / (s_tot + smoothing * support))
    log_r = np.log((r.to_numpy() + smoothing) / (r_tot + smoothing * support))
    b = pd.Series(log_s - log_r - margin, index=s.index)
    return b[b > 0]


def processor_from_bias(bias: pd.Series, vocab_size: int, h: int, strength: float) -> NeutralizeProcessor:
    ctx = np.array(bias.index.get_level_values(0), dtype=np.int64)
    tok = np.array(bias.index.get_level_values(1), dtype=np.int64)
    val = torch.tensor(strength * bias.to_numpy(), dtype=torch.float32)
    if h == 0:
        dense = torch.zeros(vocab_size)
        dense.index_put_((torch.from_numpy(tok),), val, accumulate=True)
        return NeutralizeProcessor(dense, 0)
    idx = torch.from_numpy(np.stack([ctx, tok]))
    # check_invariants: indices in range, checked once here (and torch's warning about not checking stays away)
    return NeutralizeProcessor(torch.sparse_coo_tensor(idx, val, (vocab_size, vocab_size), check_invariants=True), 1)


def _sample(model, tokenizer, prompts, *, processor=None, seed: int, max_new_tokens: int, batch_size: int = 32):
    out = []
    for start in range(0, len(prompts), batch_size):
        out += generate_batch(model, tokenizer, prompts[start:start + batch_size], max_new_tokens=max_new_tokens,
                              do_sample=True, temperature=1.0, processor=processor, seed=seed + start).completions
    return out


def fit_neutralizer(model, reference, tokenizer, prompts, *, h: int = 1, strength: float = 4.0, min_count: int = 2,
                    margin: float = 0.5, samples: int = 256, seed: int = 0, max_new_tokens: int = 128,
                    student_processor=None) -> NeutralizeProcessor:
    """Estimate the student's over-used tuples from its own samples against the reference's samples on
    the first `samples` prompts, and return the counter-biasing processor. `student_processor` is a
    processor the student's own decoding always applies (tests use it to build a watermarked model)."""
    prompts = [list(p) for p in prompts[:samples]]
    s = _sample(model, tokenizer, prompts, processor=student_processor, seed=seed, max_new_tokens=max_new_tokens)
    r = _sample(reference, tokenizer, prompts, seed=seed + 10**6, max_new_tokens=max_new_tokens)
    bias = bias_table(tuple_counts(s, prompts, h), tuple_counts(r, prompts, h), min_count=min_count, margin=margin)
    vocab = model.get_output_embeddings().weight.shape[0]
    return processor_from_bias(bias, vocab, h, strength)
