"""Wire a protection into generation: what it needs beyond the teacher's own logits.

`watermark/` declares how a protection acts (`acts_on`) and which models its processor needs
(`resources`); this module builds them (a defended teacher, proxy students, cached gradients, a
trace renderer), since loading and training models is students/' business.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from antidistill.watermark.errors import UserError

from .traces import TraceRenderer


@dataclass
class Prepared:
    model: object  # the model to sample (the teacher, or a defended teacher)
    resources: dict = field(default_factory=dict)  # keyword resources for `protection.processor`
    transform: Callable | None = None  # rewrites a batch of finished records in place


def prepare(protection, model, tokenizer, teacher_name: str, *, cache_dir=None, device=None,
            progress: bool = True) -> Prepared:
    out = Prepared(model)
    if protection.acts_on == "text":
        out.transform = TraceRenderer(protection, tokenizer, teacher_name)
    if "proxy" in protection.resources or protection.acts_on == "teacher":
        from .proxy import load_proxy, proxy_gradient

        proxy, proxy_id = load_proxy(protection.proxy, model, tokenizer, teacher_name, cache_dir=cache_dir,
                                     progress=progress)
        if protection.acts_on == "teacher":  # doge: a defended teacher, sampled plainly
            from .doge import doge_teacher

            out.model = doge_teacher(model, tokenizer, teacher_name, protection.beta, proxy, proxy_id,
                                     cache_dir=cache_dir, progress=progress)
        else:
            out.resources["proxy"] = proxy.to(device)
        if "grad" in protection.resources:
            out.resources["grad"] = proxy_gradient(proxy, proxy_id, model, tokenizer, teacher_name,
                                                   cache_dir=cache_dir, progress=progress, mode=protection.grad)
    return out


def check_inputs(protection, records: list[dict], topk_logprobs: int) -> None:
    """Refuse, before anything is written, what a protection cannot do with these inputs."""
    if protection.acts_on != "text":
        return
    if topk_logprobs:
        raise UserError(f"{protection.spec} rewrites the finished text, so the teacher's log-probabilities no "
                        "longer match it; drop --topk-logprobs")
    if any("skill" not in r for r in records):
        raise UserError(f"{protection.spec}: the trace countermeasure renders task-suite traces only; give "
                        "--prompts N (task-suite prompts), not a prompt file")
