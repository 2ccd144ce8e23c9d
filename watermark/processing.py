"""Sampling-time plumbing shared by the keyed protections (all `transformers.LogitsProcessor`s)."""
from __future__ import annotations

import numpy as np
import torch
from transformers import LogitsProcessor

from .errors import UserError
from .context import ContextHistory
from .hashing import KeyedHash, mix_


class KeyedLogitsProcessor(LogitsProcessor):
    """Holds the keyed hash and the keyed codes of the whole vocabulary (computed once per device).

    `vocab_size` must be the model's output-layer size (see `check_vocab`); scores of another width
    are refused rather than silently hashed with the wrong candidate set.
    """

    def __init__(self, protection, key, vocab_size: int, **sampling):
        # `sampling` (temperature, top_k, top_p) matters only to processors that sample themselves
        if int(vocab_size) <= 0:
            raise UserError(f"vocab_size must be positive, got {vocab_size}")
        self.protection = protection
        self.vocab_size = int(vocab_size)
        self.h = protection.context_width
        self.hash = KeyedHash(key, protection.hash_label)
        self._codes: dict[torch.device, object] = {}

    def codes(self, device: torch.device):
        """Keyed codes of the whole vocabulary, in the hash's array type for `device`."""
        if device not in self._codes:
            self._codes[device] = self.hash.tok(torch.arange(self.vocab_size, device=device))
        return self._codes[device]

    def check(self, input_ids: torch.Tensor, scores: torch.Tensor) -> bool:
        """Validate shapes; False when there are too few tokens for a full context window."""
        if scores.shape[-1] != self.vocab_size:
            raise UserError(f"{self.protection.scheme}: scores have {scores.shape[-1]} columns but the "
                            f"processor was built for vocab_size={self.vocab_size}; build it from the "
                            "model's output layer (check_vocab)")
        return input_ids.shape[-1] >= self.h

    def context(self, input_ids: torch.Tensor) -> torch.Tensor:
        return input_ids[:, input_ids.shape[-1] - self.h:]

    def window_prf(self, input_ids: torch.Tensor):
        """PRF words [B, V] for every candidate after each row's last h tokens (hash array type)."""
        x = self.hash.state(self.context(input_ids))[:, None] ^ self.codes(input_ids.device)[None, :]
        return mix_(x)

    def candidate_prf(self, input_ids: torch.Tensor, candidates: torch.Tensor):
        """PRF words [B, K] of the given candidate ids [B, K] only."""
        codes = self.codes(input_ids.device)
        index = candidates.numpy() if isinstance(codes, np.ndarray) else candidates
        return mix_(self.hash.state(self.context(input_ids))[:, None] ^ codes[index])


class SamplingLogitsProcessor(KeyedLogitsProcessor):
    """A keyed processor that draws the token itself and returns scores forcing it.

    It must see the final sampling distribution, but `generate` applies its own warpers after
    user processors; so it takes (temperature, top_k, top_p) itself: pass the same to both.

    The temperature contract, owned here: a row it watermarks comes back one-hot on the token it
    drew from the tempered distribution (one-hot is invariant under every warper); every other row
    (fewer than h tokens, or a repeated context under `mask=repeated`) comes back as the input
    scores, untouched, so `generate`'s warpers apply (temperature, top_k, top_p) exactly once.
    Subclasses implement `choose` only.
    """

    def __init__(self, protection, key, vocab_size: int, *, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0):
        super().__init__(protection, key, vocab_size)
        if not temperature > 0:
            raise UserError(f"temperature must be > 0, got {temperature}")
        if top_k < 0:
            raise UserError(f"top_k must be >= 0 (0 = off), got {top_k}")
        if not 0 < top_p <= 1:
            raise UserError(f"top_p must lie in (0, 1], got {top_p}")
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.history = ContextHistory(self.h) if getattr(protection, "mask", "none") == "repeated" else None

    def log_probs(self, scores: torch.Tensor) -> torch.Tensor:
        return sampling_log_probs(scores, self.temperature, self.top_k, self.top_p)

    def choose(self, input_ids: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        """The watermarked token [b] of each row, given its sampling log-probabilities [b, V]."""
        raise NotImplementedError

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.check(input_ids, scores):
            return scores
        if self.history is None:
            return one_hot_scores(scores, self.choose(input_ids, self.log_probs(scores)))
        rows = ~self.history.repeated(input_ids)  # a repeated context is sampled unwatermarked
        if not rows.any():
            return scores
        if rows.all():
            return one_hot_scores(scores, self.choose(input_ids, self.log_probs(scores)))
        out = scores.clone()
        out[rows] = one_hot_scores(scores[rows], self.choose(input_ids[rows], self.log_probs(scores[rows])))
        return out


def sampling_log_probs(scores: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Log-probabilities of the distribution a sampler would draw from (temperature, top-k, top-p).

    Distribution-preserving schemes (gumbel, synthid) choose the token themselves, so they must see
    the final sampling distribution; generate's own warpers run after user processors.
    Not built from transformers' Temperature/TopK/TopP warpers: the bits agree on tie-free logits, but
    where tied logits straddle the nucleus boundary they keep other members (tests/students/test_sampling_warpers.py).
    """
    logits = scores.float() / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest prefix reaching top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return torch.log_softmax(logits, dim=-1)


def sample_rows(weights: torch.Tensor) -> torch.Tensor:
    """One index per row drawn proportionally to non-negative `weights` [B, K] (inverse CDF).

    A cumulative sum and a binary search: several times cheaper than `torch.multinomial` on a
    full vocabulary, and driven by torch's global RNG like `generate`'s own sampling.
    """
    cdf = torch.cumsum(weights.double(), dim=-1)
    u = torch.rand(weights.shape[0], 1, dtype=cdf.dtype, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_max_(weights.shape[-1] - 1)


def one_hot_scores(scores: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Scores that make any later sampler or argmax emit `chosen` ([B] token ids)."""
    out = torch.full_like(scores, float("-inf"))
    return out.scatter_(-1, chosen[:, None], 0.0)
