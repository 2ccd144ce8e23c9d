"""Antidistillation sampling (Savani et al. 2025, arXiv 2504.13146).

g is the gradient of a proxy student's mean SFT loss on held-out teacher traces (students/proxy.py
computes and caches it): the mean over all completion tokens (`grad=token`, the default) or the
mean over traces of each trace's mean token loss (`grad=sequence`, the reference code's form). A student trained one SGD step on token x moves along
grad log p_P(x; theta), which changes its held-out loss by about lr * <grad log p_P(x), g>: the
directional derivative

    Delta(x) = [log p_P(x; theta + eps g) - log p_P(x; theta - eps g)] / (2 eps)

from two perturbed proxy copies, each stepped with its own KV cache (2 extra forward passes per
token). Tokens with a large Delta raise the student's held-out loss. We implement the paper's
form, sampling from softmax(z_T / tau + lam * Delta): the processor runs before `generate`'s
temperature warper, so it adds lam * tau * Delta to the raw logits. (The reference code adds
lam * Delta before the temperature, so its lam is this lam times tau.)
"""
from __future__ import annotations

import copy

import torch
from transformers import LogitsProcessor

from .errors import UserError
from .poe import PROXY
from .spec import Param, Protection, register
from .stepwise import StepwiseModel

GRAD_MODES = ("token", "sequence")


@register
class ADS(Protection):
    scheme = "ads"
    params = (
        # Delta's scale is set by the proxy's gradient: with the demo's distilled proxy its spread under
        # the teacher's distribution is about 0.2, so lam ~ 1 is where the teacher starts to lose accuracy.
        Param("lam", float, 1.0, lambda v: v >= 0.0, "lam >= 0"),
        Param("eps", float, 0.01, lambda v: v > 0.0, "eps > 0"),
        PROXY,
        # How the held-out loss behind g averages (students/proxy.py): over all completion tokens, or
        # each trace's mean over traces as the reference code does. Left out of the spec at its
        # default, so specs and cache keys from before it existed keep their meaning.
        Param("grad", str, "token", choices=GRAD_MODES, optional=True),
    )
    resources = ("proxy", "grad")
    extra_forwards = 2

    def processor(self, key, vocab_size: int, *, proxy=None, grad=None, temperature: float = 1.0, **sampling):
        if proxy is None or grad is None:
            raise UserError(f"{self.spec} needs its proxy model and the proxy's held-out gradient at sampling time "
                            "(processor(..., proxy=model, grad={name: tensor}))")
        return ADSLogitsProcessor(self.lam, self.eps, proxy, grad, vocab_size, temperature=temperature)


def perturbed(model, grad: dict, step: float):
    """A copy of `model` with every parameter moved by `step` * its gradient entry."""
    names = {n for n, _ in model.named_parameters()}
    if names != set(grad):
        missing = sorted(names - set(grad))[:3]
        raise UserError(f"ads: the gradient does not match the proxy's parameters (e.g. {missing or sorted(set(grad) - names)[:3]}); "
                        "recompute it for this proxy")
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, p in out.named_parameters():
            p.add_(grad[name].to(p.device, p.dtype), alpha=step)
    return out


class ADSLogitsProcessor(LogitsProcessor):
    def __init__(self, lam: float, eps: float, proxy, grad: dict, vocab_size: int, temperature: float = 1.0):
        if not temperature > 0:
            raise UserError(f"temperature must be > 0, got {temperature}")
        self.scale, self.eps = lam * temperature, eps
        self.plus = StepwiseModel(perturbed(proxy, grad, eps), vocab_size)
        self.minus = StepwiseModel(perturbed(proxy, grad, -eps), vocab_size)

    def delta(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Delta(x) for every candidate x after each row: [B, V], float32."""
        plus, minus = self.plus(input_ids), self.minus(input_ids)
        dtype = torch.promote_types(plus.dtype, torch.float32)  # float64 proxies keep their precision
        diff = torch.log_softmax(plus.to(dtype), -1) - torch.log_softmax(minus.to(dtype), -1)
        return diff.div_(2 * self.eps).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)  # -inf - -inf: no signal

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return scores + self.scale * self.delta(input_ids).to(scores.dtype)
