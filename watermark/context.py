"""Repeated contexts: SynthID-Text's rule, in generation and in detection (`mask=repeated`).

A keyed sampler that sees the same context window twice draws from the same keyed values twice:
on low-entropy text it picks the same token again and the text repeats itself more than the model
would (SynthID-Text with the rule off: share of repeated 4-token contexts 0.146 against 0.092-0.096
unwatermarked; issue 18). The reference (DeepMind's synthid-text `logits_processing.py`, ported as
transformers' `SynthIDTextWatermarkLogitsProcessor`) therefore keeps, per sequence, the contexts of
the last `CONTEXT_HISTORY` generation steps of one `generate` call (prompt-only windows are not
among them) and samples a step whose context is among them unwatermarked.

Generation (`ContextHistory`): the same rule, on a public 64-bit hash of the context ids (key-free,
like the reference's context hash), vectorised over the batch: one [B, n] comparison per step.

Detection (`repeated_windows`, `SkipRepeatedContexts`): a completion window whose context occurred
at one of the `CONTEXT_HISTORY` previous windows of the same text is not scored. The completion
windows of `windows.extract_windows` are exactly the generation steps of that text (the first
context reaches into the prompt), so with the prompts given the detector leaves out exactly the
positions the sampler left unwatermarked; without them a few positions whose context repeats one
that straddled the prompt are scored although unwatermarked (power, never validity). The test
stays exact: the mask is a function of the text's own token ids (a window's context compared
with the contexts before it: the prefix only), never of the key, so under H0 (text independent
of the key) the kept tuples are still independent uniform draws, deduplicated as before, and the
null law of the score sum is unchanged. It reads no other text, so a per-text verdict still
depends on that text alone.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .windows import Windows
from .errors import UserError
from .spec import Param
from .stepwise import continues

CONTEXT_HISTORY = 1024  # steps remembered per sequence, as the reference's `context_history_size`
MASK_CHOICES = ("repeated", "none")


def mask_param(default: str, optional: bool = False) -> Param:
    return Param("mask", str, default, choices=MASK_CHOICES, optional=optional)


def check_mask(protection) -> None:
    """`mask=repeated` needs a context: with h = 0 every step after the first repeats the empty one."""
    if protection.mask == "repeated" and protection.h == 0:
        raise UserError(f"{protection.scheme}: mask=repeated needs h >= 1 (with h=0 every context after the "
                        "first token is a repeat, so nothing would be watermarked); give mask=none")


_SM1, _SM2, _SM_ADD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 words (products wrap modulo 2**64)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _SM1
    x = x ^ (x >> np.uint64(27))
    x = x * _SM2
    return x ^ (x >> np.uint64(31))


def context_hash(contexts) -> np.ndarray:
    """A public (unkeyed) 64-bit hash of each context row [..., h] of token ids, as uint64.

    Public on purpose: the mask must not depend on the key. Two distinct contexts collide with
    probability 2**-64 per pair; a collision only marks one more step as repeated (the same step
    in generation and in detection), which costs power, never validity.
    """
    ctx = np.asarray(contexts, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        s = np.full(ctx.shape[:-1], _SM_ADD, dtype=np.uint64)
        for i in range(ctx.shape[-1]):  # loop over the h columns, never over positions
            s = _splitmix(s ^ (ctx[..., i] + _SM_ADD))
    return s


class ContextHistory:
    """Per row, the context windows of the previous steps of the current `generate` call.

    `repeated(input_ids)` answers, for each row, whether its current context (last h ids, by
    `context_hash`) is among the last `size` recorded ones, then records it: one [B, n] comparison
    per step. A call that does not continue the previous one by exactly one column (a new
    `generate`, a new batch) starts an empty history, as the reference's fresh state does.
    """

    def __init__(self, h: int, size: int = CONTEXT_HISTORY):
        self.h, self.size = int(h), int(size)
        self._ids: torch.Tensor | None = None
        self._seen: torch.Tensor | None = None  # [B, n <= size] context hashes (int64 view)

    def repeated(self, input_ids: torch.Tensor) -> torch.Tensor:
        ctx = input_ids[:, input_ids.shape[1] - self.h:].cpu().numpy()
        current = torch.from_numpy(context_hash(ctx).view(np.int64)).to(input_ids.device)
        if not continues(self._ids, input_ids):
            self._seen = current.new_empty((current.shape[0], 0))
        hit = (self._seen == current[:, None]).any(-1)
        self._seen = torch.cat([self._seen[:, max(0, self._seen.shape[1] - self.size + 1):], current[:, None]], 1)
        self._ids = input_ids
        return hit


def repeated_windows(windows: Windows, size: int = CONTEXT_HISTORY) -> np.ndarray:
    """True for each window whose context occurred at one of the `size` previous windows of its text.

    Windows of one text are consecutive positions in text order (`extract_windows`), so the
    distance between two window indices is the number of generation steps between them. Contexts
    are compared by (text index, `context_hash`) pairs, so texts never meet and a text's mask is
    the same alone and in any batch (a 64-bit collision within a text only leaves one more
    position unscored).
    """
    n = len(windows.tokens)
    if n < 2:
        return np.zeros(n, dtype=bool)
    seq, ident = windows.seq_index, context_hash(windows.contexts)
    if np.bincount(seq).max() <= size:  # no text longer than the history: all earlier windows count
        return pd.DataFrame({"seq": seq, "ctx": ident}, copy=False).duplicated(keep="first").to_numpy()
    order = np.lexsort((np.arange(n), ident, seq))  # by text, then context, then position
    a, b = order[:-1], order[1:]
    out = np.zeros(n, dtype=bool)
    out[b] = (seq[a] == seq[b]) & (ident[a] == ident[b]) & (b - a <= size)
    return out


class SkipRepeatedContexts:
    """Detector mixin: with `mask=repeated`, windows whose context repeats an earlier one of the same
    text are not scored (the base detector leaves out what `unscored` marks, before dedup)."""

    def unscored(self, windows: Windows) -> np.ndarray | None:
        return repeated_windows(windows) if self.protection.mask == "repeated" else None
