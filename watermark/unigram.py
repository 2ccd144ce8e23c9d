"""Unigram watermark (Zhao et al. 2023): KGW with an empty context, one fixed green list.

The most learnable and so the most radioactive variant: a student only has to learn a fixed
preference over the vocabulary. Detection scores each distinct token once (h = 0 windows).
"""
from __future__ import annotations

import torch

from .kgw import KGW, KGWLogitsProcessor
from .spec import Param, register


@register
class Unigram(KGW):
    scheme = "unigram"
    params = (
        Param("gamma", float, 0.5, lambda v: 1e-3 <= v <= 0.999, "0.001 <= gamma <= 0.999"),
        Param("delta", float, 2.0, lambda v: 0.0 <= v <= 100.0, "0 <= delta <= 100"),
    )
    h = 0
    hash = "left"

    @property
    def hash_label(self) -> str:
        return self.scheme


class UnigramLogitsProcessor(KGWLogitsProcessor):
    """The green list never changes, so the bias vector is computed once per device."""

    def __init__(self, protection: Unigram, key, vocab_size: int, **sampling):
        super().__init__(protection, key, vocab_size)
        self._bias: dict[torch.device, torch.Tensor] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.check(input_ids, scores)
        bias = self._bias.get(scores.device)
        if bias is None or bias.dtype != scores.dtype:
            green = self.green(input_ids[:1, :0])[0]
            bias = self._bias[scores.device] = self.delta * green.to(scores.dtype)
        return scores + bias


Unigram.processor_class = UnigramLogitsProcessor
