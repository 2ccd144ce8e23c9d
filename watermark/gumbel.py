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

from .context import SkipRepeatedContexts, check_mask, mask_param
from .detection import TokenHashDetector
from .hashing import as_tensor, mix, to_unit
from .processing import SamplingLogitsProcessor
from .spec import KeyedProtection, Param, register
from .stats import gamma_log_sf


@register
class Gumbel(KeyedProtection):
    scheme = "gumbel"
    params = (Param("h", int, 2, lambda v: 0 <= v <= 16, "0 <= h <= 16"), mask_param("none", optional=True))

    def validate(self) -> None:
        check_mask(self)


class GumbelLogitsProcessor(SamplingLogitsProcessor):
    """Chooses the Gumbel-max token of the sampling distribution and returns scores forcing it.

    Rows with fewer than h tokens (and, with `mask=repeated`, repeated contexts) pass unchanged.
    """

    def choose(self, input_ids: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        log_u = torch.log(as_tensor(to_unit(self.window_prf(input_ids)), log_p.device)).float()
        # argmax u ** (1/p) = argmax log(u) / p: one log per candidate; -inf where p = 0. The
        # ratio in float32 (relative error 1e-7) only reorders near-ties.
        return torch.argmax(log_u / log_p.exp(), dim=-1)


class GumbelDetector(SkipRepeatedContexts, TokenHashDetector):
    """Sum of -log(1 - u) over distinct tuples; exact Gamma(n, 1) upper tail."""

    monotone_selection = True

    def tuple_scores(self, prf_inputs):
        return -np.log1p(-to_unit(mix(prf_inputs)))

    def null_mean_var(self):
        return 1.0, 1.0

    def log_sf(self, statistic, n):
        return gamma_log_sf(statistic, n) if math.isfinite(statistic) else 0.0

    def log_mgf(self, theta):
        return -np.log1p(-theta)  # Exp(1), finite for theta < 1

    log_mgf.theta_max = 1.0


Gumbel.processor_class, Gumbel.detector_class = GumbelLogitsProcessor, GumbelDetector
