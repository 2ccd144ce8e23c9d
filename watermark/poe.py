"""Product of experts: the teacher's logits mixed with a proxy student's, (1-gamma) z_T + gamma z_P.

The forward-only baseline of the distillation-game paper (arXiv 2605.22737): tokens the proxy
student would predict anyway get more weight, tokens only the teacher knows less, with one proxy
forward pass per generated token (KV-cached, watermark/stepwise.py). `proxy` names the model
(students/proxy.py resolves it); the processor receives it as the `proxy` resource.
"""
from __future__ import annotations

import torch
from transformers import LogitsProcessor

from .errors import UserError
from .spec import Param, Protection, register
from .stepwise import StepwiseModel

PROXY = Param("proxy", str, "distilled", lambda v: bool(v.strip()), "a preset, 'distilled' or a model folder")


@register
class PoE(Protection):
    scheme = "poe"
    params = (Param("gamma", float, 0.3, lambda v: 0.0 <= v <= 1.0, "0 <= gamma <= 1"), PROXY)
    resources = ("proxy",)
    extra_forwards = 1

    def processor(self, key, vocab_size: int, *, proxy=None, **sampling):
        if proxy is None:
            raise UserError(f"{self.spec} needs its proxy model at sampling time (processor(..., proxy=model))")
        return PoELogitsProcessor(self.gamma, StepwiseModel(proxy, vocab_size))


class PoELogitsProcessor(LogitsProcessor):
    def __init__(self, gamma: float, proxy: StepwiseModel):
        self.gamma, self.proxy = gamma, proxy

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        z_p = self.proxy(input_ids).to(scores.dtype)
        return torch.lerp(scores, z_p, self.gamma)
