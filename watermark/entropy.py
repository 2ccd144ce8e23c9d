"""Entropy-aware detection: score only choice points (SWEET) or weight positions by entropy (EWD).

Most tokens of a reasoning trace are forced (digits, syntax, the trace's structure): the teacher
is sure of them, a watermark bias changes nothing there and scoring them only adds noise. An
unprotected *reference* model (the auditor's own teacher) reads each prefix and says how
uncertain the next token is; positions it is sure of are dropped (Lee et al. 2023, "SWEET") or
down-weighted (Lu et al. 2024, "EWD").

Why the test stays valid: the mask and the weights are functions of the prefix and of a model that
never saw the key. Under H0 (text written without the key) they are independent of the keyed draws,
so the distinct PRF inputs they select are still i.i.d. with the scheme's null law: the unweighted
tail stays exact, and the weighted sum gets a Chernoff bound (`stats.weighted_log_sf_bound`).

Positions are those of `windows.extract_windows` (completion positions with a full context
window), in the same order; a position with no prefix at all (the first token of a text without
prompt) has no reference prediction and is kept with weight 1 (uninformed, still key-free).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .windows import as_sequences
from .errors import UserError


@dataclass(frozen=True)
class ChoiceRule:
    """Keep a position when the reference's top-1 probability < `max_top1` or its entropy (nats)
    >= `min_entropy` (either criterion alone when the other is None); `weighted`: weight each kept
    position by the reference entropy (EWD)."""

    max_top1: float | None = None
    min_entropy: float | None = None
    weighted: bool = False

    def __post_init__(self):
        if self.max_top1 is not None and not 0.0 < self.max_top1 <= 1.0:
            raise UserError(f"reference top-1 threshold must lie in (0, 1], got {self.max_top1}")
        if self.min_entropy is not None and not (math.isfinite(self.min_entropy) and self.min_entropy >= 0):
            raise UserError(f"reference entropy threshold must be a finite number >= 0, got {self.min_entropy}")

    @property
    def filters(self) -> bool:
        return self.max_top1 is not None or self.min_entropy is not None

    def describe(self) -> str:
        parts = []
        if self.max_top1 is not None:
            parts.append(f"top1<{self.max_top1:g}")
        if self.min_entropy is not None:
            parts.append(f"entropy>={self.min_entropy:g}")
        text = " or ".join(parts) or "all positions"
        return text + (", entropy-weighted" if self.weighted else "")

    def apply(self, top1: np.ndarray, entropy: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(keep mask, weights or None) from the reference's per-position top-1 probability and entropy."""
        top1, entropy = np.asarray(top1, float), np.asarray(entropy, float)
        unknown = np.isnan(top1)
        if self.filters:
            keep = np.zeros(len(top1), dtype=bool)
            if self.max_top1 is not None:
                keep |= top1 < self.max_top1
            if self.min_entropy is not None:
                keep |= entropy >= self.min_entropy
            keep |= unknown
        else:
            keep = np.ones(len(top1), dtype=bool)
        weights = np.where(unknown, 1.0, np.maximum(entropy, 0.0)) if self.weighted else None
        return keep, weights


def _batches(texts: list[tuple[np.ndarray, np.ndarray]], batch_size: int):
    """Right-padded (ids, mask) batches of prompt + completion, sorted by length to pad little."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i][0]) + len(texts[i][1]))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        seqs = [np.concatenate(texts[i]) for i in idx]
        width = max(len(s) for s in seqs)
        ids = torch.zeros((len(seqs), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, s in enumerate(seqs):
            ids[row, :len(s)] = torch.from_numpy(s)
            mask[row, :len(s)] = 1
        yield idx, ids, mask


@torch.no_grad()
def reference_uncertainty(model, sequences, prompts=None, h: int = 1, *, batch_size: int = 16,
                          first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The reference's top-1 probability and entropy (nats) of the next token at every scored
    position: completion positions t >= max(len(prompt), h, first), texts in order (the windows of
    `extract_windows` for first=0). One teacher-forced forward per batch, no per-token loop.
    Position 0 (no prefix) gets NaN."""
    seqs = as_sequences(sequences)
    prm = [np.zeros(0, np.int64)] * len(seqs) if prompts is None else as_sequences(prompts)
    if len(prm) != len(seqs):
        raise UserError(f"{len(prm)} prompts for {len(seqs)} sequences; give one prompt per sequence")
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    top_id = max((int(s.max()) for s in seqs + prm if len(s)), default=-1)
    if vocab is not None and top_id >= vocab:
        raise UserError(f"token id {top_id} is outside the reference model's vocabulary ({vocab}); the reference "
                        "must share the texts' tokenizer")
    device = next(model.parameters()).device
    texts = list(zip(prm, seqs))
    top1_parts: list = [None] * len(texts)
    ent_parts: list = [None] * len(texts)
    for idx, ids, mask in _batches(texts, batch_size):
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        top1 = logp.amax(-1).exp().cpu().numpy()  # [B, T]: predicts position t + 1
        ent = (-(logp.exp() * logp).nansum(-1)).cpu().numpy()
        for row, i in enumerate(idx):
            p, c = texts[i]
            pos = np.arange(max(len(p), h, first), len(p) + len(c))
            t1 = np.full(len(pos), np.nan)
            en = np.full(len(pos), np.nan)
            ok = pos >= 1
            t1[ok], en[ok] = top1[row, pos[ok] - 1], ent[row, pos[ok] - 1]
            top1_parts[i], ent_parts[i] = t1, en
    if not texts:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(top1_parts), np.concatenate(ent_parts)


def choice_points(model, sequences, prompts, h: int, rule: ChoiceRule, *,
                  batch_size: int = 16) -> tuple[np.ndarray, np.ndarray | None]:
    """(keep, weights) over the detector's completion windows, for `TokenHashDetector.detect*`."""
    top1, entropy = reference_uncertainty(model, sequences, prompts, h, batch_size=batch_size)
    return rule.apply(top1, entropy)
