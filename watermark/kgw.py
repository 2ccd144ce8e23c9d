"""KGW (Kirchenbauer et al. 2023): a keyed green list per context, bias delta on green logits.

Green means PRF(window, token) < gamma * 2**32, so each distinct tuple is green with probability
exactly `gamma_eff` (gamma rounded to a multiple of 2**-32) under H0, independently of the others:
the green count of n distinct tuples is Binomial(n, gamma_eff) and its upper tail is exact.

hash=left: the window is the h previous tokens (all h are folded into the state).
entropy=H (SWEET, Lee et al. 2023): bias only steps where the teacher's own next-token entropy
  (nats, of the scores the processor sees) is at least H; forced tokens are left untouched. The
  detector is unchanged; `detect --reference TEACHER --min-reference-entropy H` scores the same steps.

hash=self: anchored min-hash (Kirchenbauer et al.'s SelfHash): the seed for candidate v is
  min_i PRF([c_i], v) over the h previous tokens c_i, so the green list depends on the candidate
  itself and on every context token, yet a single edited context token rarely changes it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .detection import TokenHashDetector
from .hashing import TWO32, as_tensor, minimum_, mix, mix_
from .processing import KeyedLogitsProcessor
from .spec import KeyedProtection, Param, register
from .stats import binom_log_sf


def green_threshold(gamma: float) -> int:
    return min(2**32 - 1, max(1, round(gamma * TWO32)))


@register
class KGW(KeyedProtection):
    scheme = "kgw"
    # gamma < 0.001 leaves no green token in a small vocabulary; delta > 100 is forced sampling long
    # before, and 1e39 overflows float32 logits into NaN.
    params = (
        Param("gamma", float, 0.25, lambda v: 1e-3 <= v <= 0.999, "0.001 <= gamma <= 0.999"),
        Param("delta", float, 2.0, lambda v: 0.0 <= v <= 100.0, "0 <= delta <= 100"),
        Param("h", int, 1, lambda v: 1 <= v <= 16, "1 <= h <= 16"),
        Param("hash", str, "left", choices=("left", "self")),
        Param("entropy", float, 0.0, lambda v: v >= 0.0, "entropy >= 0", optional=True),
    )

    @property
    def hash_label(self) -> str:
        return f"{self.scheme}/{self.hash}"

    @property
    def gamma_eff(self) -> float:
        return green_threshold(self.gamma) / TWO32


def self_hash_inputs(hasher, contexts: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Anchored min-hash: min over context tokens c_i of PRF([c_i], token), re-keyed.

    `contexts` [..., h] and the candidates' keyed `codes` broadcast against each other; the min
    runs over h (a constant), not over positions.
    """
    seed = None
    for i in range(contexts.shape[-1]):
        part = mix_(hasher.state(contexts[..., i:i + 1]) ^ codes)
        seed = part if seed is None else minimum_(seed, part)
    seed ^= hasher.k_hi
    return seed


class KGWLogitsProcessor(KeyedLogitsProcessor):
    """Adds delta to the logits of green candidates; rows with fewer than h tokens pass unchanged."""

    def __init__(self, protection: KGW, key, vocab_size: int, **sampling):
        super().__init__(protection, key, vocab_size)
        self.threshold = green_threshold(protection.gamma)
        self.delta = protection.delta
        self.entropy_min = getattr(protection, "entropy", 0.0)

    def green(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.protection.hash == "left":
            prf = self.window_prf(input_ids)
        else:
            codes = self.codes(input_ids.device)[None, :]
            prf = mix_(self_hash_inputs(self.hash, self.context(input_ids)[:, None, :], codes))
        return as_tensor(prf < self.threshold, input_ids.device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.check(input_ids, scores):
            return scores
        green = self.green(input_ids)
        if self.entropy_min > 0:
            logp = torch.log_softmax(scores.float(), dim=-1)
            entropy = -(logp.exp() * logp).nansum(-1, keepdim=True)
            green = green & (entropy >= self.entropy_min)
        return scores.add(green, alpha=self.delta)


class KGWDetector(TokenHashDetector):
    """Green count of distinct tuples; exact Binomial(n, gamma_eff) upper tail."""

    monotone_selection = True

    def prf_inputs(self, contexts, tokens):
        if self.protection.hash == "self":
            return self_hash_inputs(self.hash, contexts, self.hash.tok(tokens))
        return super().prf_inputs(contexts, tokens)

    def tuple_scores(self, prf_inputs):
        return (mix(prf_inputs) < green_threshold(self.protection.gamma)).astype(float)

    def null_mean_var(self):
        g = self.protection.gamma_eff
        return g, g * (1 - g)

    def log_sf(self, statistic, n):
        return binom_log_sf(int(round(statistic)), n, self.protection.gamma_eff)

    def score_binomial(self):
        return 1, self.protection.gamma_eff

    def log_mgf(self, theta):
        g = self.protection.gamma_eff
        return np.logaddexp(math.log1p(-g), math.log(g) + theta)


KGW.processor_class, KGW.detector_class = KGWLogitsProcessor, KGWDetector
