"""SynthID-Text-style tournament sampling (Dathathri et al. 2024).

Each (window, candidate) gets `depth` g-values in {0, 1}: the bits of one 32-bit keyed hash, so
one hash serves all layers. A two-candidate tournament per layer has the closed form
    p_l(v) = p_{l-1}(v) * (1 + g_l(v) - E_{p_{l-1}}[g_l]),
which is non-distortionary in expectation over keys (E[g_l(v)] = 1/2 for every v). The processor
draws the token from p_depth. Detection counts ones among the depth g-values of each distinct
tuple: Binomial(n * depth, 1/2) under H0, exact.

`mask=repeated` (the default, the reference's rule): a step whose context window already occurred
in the last 1024 steps of the same text is sampled unwatermarked, and the detector leaves those
positions out (`context.py`: why the test stays exact). `mask=none` watermarks every step, as
antidistill did before (specs printed without `mask` meant that).
"""
from __future__ import annotations

import numpy as np
import torch

from .context import SkipRepeatedContexts, check_mask, mask_param
from .detection import TokenHashDetector
from .hashing import as_tensor, mix
from .processing import SamplingLogitsProcessor, sample_rows
from .spec import KeyedProtection, Param, register
from .stats import binom_log_sf


@register
class SynthID(KeyedProtection):
    scheme = "synthid"
    params = (
        Param("depth", int, 16, lambda v: 1 <= v <= 32, "1 <= depth <= 32"),
        Param("h", int, 4, lambda v: 0 <= v <= 16, "0 <= h <= 16"),
        # printed always: the default changed its meaning (specs without it were unmasked)
        mask_param("repeated"),
    )

    def validate(self) -> None:
        check_mask(self)


def g_values(prf, depth: int):
    """[..., depth] g-values in {0, 1}: bit l of the keyed hash is layer l's g-value."""
    if isinstance(prf, np.ndarray):
        return (prf[..., None] >> np.arange(depth, dtype=prf.dtype)) & 1
    return (prf[..., None] >> torch.arange(depth, device=prf.device)) & 1


def tournament(probs: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Apply the tournament layers to probs [B, K] with g [B, K, depth], layer by layer.

    The reference form of the closed-form update (used on small supports and in the tests).
    """
    g = g.to(probs.dtype)
    for layer in range(g.shape[-1]):
        g_l = g[..., layer]
        probs = probs * (1.0 + g_l - (probs * g_l).sum(-1, keepdim=True))
    return probs


def tournament_by_pattern(probs: torch.Tensor, prf: torch.Tensor, depth: int) -> torch.Tensor:
    """The same tournament in O(V + 2**depth) per row instead of O(V * depth).

    A candidate's final weight depends only on its g-value pattern (the low `depth` bits of its
    hash), and layer l's mean E[g_l] only on the probability mass per pattern prefix of bits
    0..l. So: histogram the mass by pattern once, sum out the high bits to get every prefix
    marginal, then grow the table of weights F over prefixes one layer at a time.
    """
    codes = prf & ((1 << depth) - 1)
    mass = torch.zeros(probs.shape[0], 1 << depth, dtype=torch.float64, device=probs.device)
    mass.scatter_add_(1, codes, probs.double())
    marginals = [mass]  # marginals[k]: mass over bits 0..depth-1-k, index = bit pattern
    for layer in reversed(range(1, depth)):
        top = marginals[-1]
        marginals.append(top[:, : 1 << layer] + top[:, 1 << layer:])
    marginals.reverse()  # marginals[l]: over bits 0..l
    table = torch.ones(probs.shape[0], 1 << depth, dtype=torch.float64, device=probs.device)
    for layer in range(depth):  # table[:, :2**layer] holds the weights of prefixes of length layer
        weight, ones_mass = table[:, : 1 << layer], marginals[layer][:, 1 << layer:]
        mean_g = (weight * ones_mass).sum(-1, keepdim=True)  # E[g_layer] under the current weights
        torch.mul(weight, 2.0 - mean_g, out=table[:, 1 << layer: 2 << layer])  # bit `layer` = 1
        weight.mul_(1.0 - mean_g)  # bit `layer` = 0
    return probs.double() * table.gather(1, codes)


class SynthIDLogitsProcessor(SamplingLogitsProcessor):
    """Draws the token from the tournament distribution and returns scores that force it.

    A zero-probability candidate stays zero through every layer, so after top-k/top-p the
    tournament runs on the support alone; on a full vocabulary it runs by g-value pattern
    (depth <= 16). The draw uses torch's global RNG, which `torch.manual_seed` fixes just as it
    fixes `generate`.
    """

    PATTERN_MAX_DEPTH = 16

    def __init__(self, protection, key, vocab_size, **sampling):
        super().__init__(protection, key, vocab_size, **sampling)
        self.depth = protection.depth

    def choose(self, input_ids: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        support = int(torch.isfinite(log_p).sum(-1).max())
        # by pattern costs O(V + 2**depth) per row: worth it only when that beats O(support * depth)
        if support * self.depth <= max(4 * self.vocab_size, 1 << self.depth) or self.depth > self.PATTERN_MAX_DEPTH:
            log_top, candidates = torch.topk(log_p, support, dim=-1)
            prf = as_tensor(self.candidate_prf(input_ids, candidates), log_p.device)
            probs = tournament(log_top.double().exp(), g_values(prf, self.depth))
            return candidates.gather(-1, sample_rows(probs.clamp_min(0)))[:, 0]
        prf = as_tensor(self.window_prf(input_ids) & ((1 << self.depth) - 1), log_p.device)
        probs = tournament_by_pattern(log_p.exp(), prf, self.depth)
        return sample_rows(probs.clamp_min(0))[:, 0]


class SynthIDDetector(SkipRepeatedContexts, TokenHashDetector):
    """Number of g-values equal to 1 over distinct tuples; exact Binomial(n * depth, 1/2) tail.

    With `mask=repeated`, windows whose context repeats an earlier one of the same text are not
    scored (they were sampled unwatermarked)."""

    # Not monotone: raising another token's g-values can knock out the token that would have
    # beaten w in an early round of the tournament, which helps w.

    def tuple_scores(self, prf_inputs):
        # the number of ones among the depth g-values is the popcount of the hash's low bits
        low_bits = mix(prf_inputs) & np.uint32((1 << self.protection.depth) - 1)
        return np.bitwise_count(low_bits).astype(float)

    def null_mean_var(self):
        d = self.protection.depth
        return d / 2, d / 4

    def log_sf(self, statistic, n):
        return binom_log_sf(int(round(statistic)), n * self.protection.depth, 0.5)

    def score_binomial(self):
        return self.protection.depth, 0.5

    def log_mgf(self, theta):
        return self.protection.depth * (np.logaddexp(0.0, theta) - np.log(2.0))


SynthID.processor_class, SynthID.detector_class = SynthIDLogitsProcessor, SynthIDDetector
