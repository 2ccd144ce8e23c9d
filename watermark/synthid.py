"""SynthID-Text-style tournament sampling (Dathathri et al. 2024).

Each (window, candidate) gets `depth` g-values in {0, 1}: the bits of one 32-bit keyed hash, so
one hash serves all layers. A two-candidate tournament per layer has the closed form
    p_l(v) = p_{l-1}(v) * (1 + g_l(v) - E_{p_{l-1}}[g_l]),
which is non-distortionary in expectation over keys (E[g_l(v)] = 1/2 for every v). The processor
draws the token from p_depth. Detection counts ones among the depth g-values of each distinct
tuple: Binomial(n * depth, 1/2) under H0, exact.
"""
from __future__ import annotations

import torch

from .detection import TokenHashDetector
from .hashing import mix
from .processing import KeyedLogitsProcessor, one_hot_scores, sampling_log_probs
from .spec import Param, Protection, register
from .stats import binom_log_sf


@register
class SynthID(Protection):
    scheme = "synthid"
    params = (
        Param("depth", int, 16, lambda v: 1 <= v <= 32, "1 <= depth <= 32"),
        Param("h", int, 4, lambda v: 0 <= v <= 16, "0 <= h <= 16"),
    )
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
        return SynthIDLogitsProcessor(self, key, vocab_size, temperature=temperature, top_k=top_k, top_p=top_p)

    def detector(self, key):
        return SynthIDDetector(self, key)


def g_values(prf: torch.Tensor, depth: int) -> torch.Tensor:
    """[..., depth] g-values in {0, 1}: bit l of the keyed hash is layer l's g-value."""
    shifts = torch.arange(depth, device=prf.device)
    return (prf[..., None] >> shifts) & 1


def tournament(probs: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Apply the depth tournament layers to probs [B, K] with g [B, K, depth] (closed form)."""
    g = g.to(probs.dtype)
    for layer in range(g.shape[-1]):
        g_l = g[..., layer]
        probs = probs * (1.0 + g_l - (probs * g_l).sum(-1, keepdim=True))
    return probs


class SynthIDLogitsProcessor(KeyedLogitsProcessor):
    """Draws the token from the tournament distribution and returns scores that force it.

    Only candidates with non-zero probability can win (a zero stays zero through every layer), so
    the tournament runs on that support alone: after top-k it costs K, not V, per row. The draw
    uses torch's global RNG, which `torch.manual_seed` fixes just as it fixes `generate`.
    """

    def __init__(self, protection, key, vocab_size, *, temperature=1.0, top_k=0, top_p=1.0):
        super().__init__(protection, key, vocab_size)
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.depth = protection.depth

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        log_p = sampling_log_probs(scores, self.temperature, self.top_k, self.top_p)
        if not self.check(input_ids, scores):
            return log_p.to(scores.dtype)
        support = int(torch.isfinite(log_p).sum(-1).max())
        log_top, candidates = torch.topk(log_p, support, dim=-1)
        context = input_ids[:, input_ids.shape[-1] - self.h:]
        prf = mix(self.hash.state(context)[:, None] ^ self.codes(input_ids.device)[candidates])
        probs = tournament(log_top.double().exp(), g_values(prf, self.depth))
        pick = torch.multinomial(probs.clamp_min(0).float(), 1)
        return one_hot_scores(scores, candidates.gather(-1, pick)[:, 0])


class SynthIDDetector(TokenHashDetector):
    """Number of g-values equal to 1 over distinct tuples; exact Binomial(n * depth, 1/2) tail."""

    def tuple_scores(self, prf_inputs):
        return g_values(mix(prf_inputs), self.protection.depth).sum(-1).numpy().astype(float)

    def null_mean_var(self):
        d = self.protection.depth
        return d / 2, d / 4

    def log_sf(self, statistic, n):
        return binom_log_sf(int(round(statistic)), n * self.protection.depth, 0.5)
