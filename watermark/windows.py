"""Texts as (context window, token) tuples: the unit every token-hash scheme scores.

`extract_windows` cuts completions (and their prompts) into windows, vectorised over positions and
ragged over sequences; `first_occurrence` is the dedup every detector applies to their PRF inputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .errors import UserError


@dataclass(frozen=True)
class Windows:
    """(context window, token) tuples in text order, with the sequence each came from."""

    contexts: np.ndarray  # int64 [N, h]
    tokens: np.ndarray  # int64 [N]
    seq_index: np.ndarray  # int64 [N]


def as_sequences(sequences) -> list[np.ndarray]:
    """Accept one sequence or many (lists, numpy arrays, tensors); return int64 arrays."""
    if isinstance(sequences, torch.Tensor):
        sequences = sequences.detach().cpu().numpy()
    if isinstance(sequences, np.ndarray):
        if sequences.ndim == 1:
            sequences = [sequences]
        elif sequences.ndim != 2:
            raise UserError(f"token ids must be 1-D or 2-D, got shape {sequences.shape}")
    sequences = list(sequences)
    if sequences and np.ndim(sequences[0]) == 0:  # a single flat sequence of ints
        sequences = [sequences]
    out = []
    for i, seq in enumerate(sequences):
        if isinstance(seq, torch.Tensor):
            seq = seq.detach().cpu().numpy()
        arr = np.asarray(seq)
        if arr.size == 0:
            out.append(np.zeros(0, dtype=np.int64))
            continue
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise UserError(f"sequence {i}: token ids must be a flat list of integers")
        if arr.min() < 0 or arr.max() >= 2**32:
            raise UserError(f"sequence {i}: token ids must lie in [0, 2**32)")
        out.append(arr.astype(np.int64, copy=False))
    return out


def _ragged_positions(starts: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All integers in [start_i, stop_i) for every i, concatenated, and the i each came from."""
    counts = np.maximum(stops - starts, 0)
    total = int(counts.sum())
    owner = np.repeat(np.arange(len(counts)), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + offsets, owner


def extract_windows(sequences, prompts=None, h: int = 1) -> tuple[Windows, Windows]:
    """Windows of the completions (scored) and of the prompts (for optional exclusion).

    The context of a completion's first tokens reaches back into its prompt; positions with fewer
    than h tokens before them have no full window and are not scored.
    """
    seqs = as_sequences(sequences)
    if prompts is None:
        prm = [np.zeros(0, dtype=np.int64)] * len(seqs)
    else:
        prm = as_sequences(prompts)
        if len(prm) == 1 and len(seqs) > 1 and np.ndim(prompts[0]) == 0:
            prm = prm * len(seqs)
        if len(prm) != len(seqs):
            raise UserError(f"{len(prm)} prompts for {len(seqs)} sequences; give one prompt per sequence")
    full_len = np.array([len(p) + len(s) for p, s in zip(prm, seqs)], dtype=np.int64)
    prompt_len = np.array([len(p) for p in prm], dtype=np.int64)
    flat = np.concatenate([np.concatenate([p, s]) for p, s in zip(prm, seqs)]) if seqs else np.zeros(0, np.int64)
    base = np.cumsum(full_len) - full_len

    def windows(lo, hi) -> Windows:
        pos, owner = _ragged_positions(base + lo, base + hi)
        ctx = flat[pos[:, None] + np.arange(-h, 0)] if h else np.zeros((len(pos), 0), np.int64)
        return Windows(ctx, flat[pos], owner)

    completion = windows(np.maximum(prompt_len, h), full_len)
    prompt = windows(np.full_like(prompt_len, h), prompt_len)
    return completion, prompt


def first_occurrence(keys: np.ndarray) -> np.ndarray:
    """Boolean mask keeping the first occurrence of each value (hash-based, order preserving)."""
    return ~pd.Series(keys, copy=False).duplicated(keep="first").to_numpy()
