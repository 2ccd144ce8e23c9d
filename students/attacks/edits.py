"""Attacker-side edits of token sequences: random substitution, deletion, insertion.

Each attack edits a fraction `rate` of the positions of every sequence, seeded, and returns new
lists (inputs are not modified). Replacement/inserted tokens are drawn uniformly from
[low, vocab_size), so special tokens (ids below `low`) are never introduced.
"""
from __future__ import annotations

import numpy as np

from antidistill.watermark.errors import UserError

ATTACKS = ("none", "substitute", "delete", "insert")


def edit_sequences(sequences, attack: str, rate: float, vocab_size: int, *, seed: int = 0,
                   low: int = 4) -> list[list[int]]:
    if attack not in ATTACKS:
        raise UserError(f"unknown edit attack {attack!r}; valid attacks: {', '.join(ATTACKS)}")
    if not 0.0 <= rate <= 1.0:
        raise UserError(f"edit rate must lie in [0, 1], got {rate}")
    rng = np.random.default_rng(seed)
    out = []
    for seq in sequences:
        s = np.asarray(list(seq), dtype=np.int64)
        if attack == "none" or rate == 0.0 or s.size == 0:
            out.append(s.tolist())
            continue
        hit = rng.random(s.size) < rate
        if attack == "substitute":
            s = s.copy()
            s[hit] = rng.integers(low, vocab_size, size=int(hit.sum()))
        elif attack == "delete":
            s = s[~hit]
        else:  # insert a random token before each hit position
            new = rng.integers(low, vocab_size, size=s.size)
            s = np.stack([new, s], axis=1)[np.stack([hit, np.ones_like(hit)], axis=1)]  # row-major
        out.append(s.tolist())
    return out
