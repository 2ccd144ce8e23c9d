"""Gumbel-max watermark (Aaronson 2022; Kuditipudi et al. 2023): distortion-free sampling.

For each candidate v the keyed hash gives u_v ~ U(0,1); the token emitted is
argmax_v u_v ** (1 / p_v) = argmax_v (log p_v - log(-log u_v)), i.e. Gumbel-max sampling with
keyed noise: over keys it is an exact draw from p. Detection sums -log(1 - u) of the emitted
tokens: Exp(1) per distinct tuple under H0, so the sum of n is Gamma(n, 1) (u is a 32-bit grid
value, (x + 1/2) / 2**32, so "exact" is up to that 2**-32 discretisation).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .detection import TokenHashDetector
from .hashing import as_tensor, mix, to_unit
from .processing import KeyedLogitsProcessor, check_sampling, one_hot_scores, sampling_log_probs
from .spec import Param, Protection, register
from .stats import gamma_log_sf


@register
class Gumbel(Protection):
    scheme = "gumbel"
    params = (Param("h", int, 2, lambda v: 0 <= v <= 16, "0 <= h <= 16"),)
    has_detector = True
    needs_key = True

    @property
    def context_width(self) -> int:
        return self.h

    @property
    def hash_label(self) -> str:
        return self.scheme

    def processor(self, key, vocab_size: int, *, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0, **resources):
        return GumbelLogitsProcessor(self, key, vocab_size, temperature=temperature, top_k=top_k, top_p=top_p)

    def detector(self, key):
        return GumbelDetector(self, key)


class GumbelLogitsProcessor(KeyedLogitsProcessor):
    """Chooses the Gumbel-max token and returns scores that force it.

    It samples from the distribution given by (temperature, top_k, top_p) itself, because
    `generate` applies its own warpers after user processors; pass the same values to both.
    Rows with fewer than h tokens fall back to that distribution unchanged.
    """

    def __init__(self, protection, key, vocab_size, *, temperature=1.0, top_k=0, top_p=1.0):
        super().__init__(protection, key, vocab_size)
        check_sampling(temperature, top_k, top_p)
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        log_p = sampling_log_probs(scores, self.temperature, self.top_k, self.top_p)
        if not self.check(input_ids, scores):
            return log_p.to(scores.dtype)
        log_u = torch.log(as_tensor(to_unit(self.window_prf(input_ids)), scores.device))
        # argmax u ** (1/p) = argmax log(u) / p: one log per candidate; -inf where p = 0.
        chosen = torch.argmax(log_u / log_p.double().exp(), dim=-1)
        return one_hot_scores(scores, chosen)


class GumbelDetector(TokenHashDetector):
    """Sum of -log(1 - u) over distinct tuples; exact Gamma(n, 1) upper tail."""

    def tuple_scores(self, prf_inputs):
        return -np.log1p(-to_unit(mix(prf_inputs)))

    def null_mean_var(self):
        return 1.0, 1.0

    def log_sf(self, statistic, n):
        return gamma_log_sf(statistic, n) if math.isfinite(statistic) else 0.0
