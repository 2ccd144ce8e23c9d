"""Wire a protection into generation: what it needs beyond the teacher's own logits.

`watermark/` declares how a protection acts (`acts_on`) and which models its processor needs
(`resources`); this module builds them (a defended teacher, proxy students, cached gradients, a
trace renderer), since loading and training models is students/' business.
"""
from __future__ import annotations

from antidistill.watermark.errors import UserError

from ..tasks.registry import parse_task
from ..tasks.traces import TraceRenderer
from .doge import doge_teacher
from .proxy import load_proxy, proxy_gradient
from .sample import Prepared


def prepare(protection, model, tokenizer, teacher_name: str, *, cache_dir=None, device=None,
            progress: bool = True, task=None) -> Prepared:
    """What `protection` needs beyond the teacher's logits, built (or loaded from the cache) now; the
    proxy's own data are prompts of `task`'s train split (default: demo)."""
    out = Prepared(model)
    task = parse_task(task)
    if protection.acts_on == "text":
        out.transform = TraceRenderer(protection, tokenizer, teacher_name, task)
    if "proxy" in protection.resources or protection.acts_on == "teacher":
        proxy, proxy_id = load_proxy(protection.proxy, model, tokenizer, teacher_name, cache_dir=cache_dir,
                                     progress=progress, task=task)
        if protection.acts_on == "teacher":  # doge: a defended teacher, sampled plainly
            out.model = doge_teacher(model, tokenizer, teacher_name, protection.beta, proxy, proxy_id,
                                     cache_dir=cache_dir, progress=progress, task=task)
        else:
            out.resources["proxy"] = proxy.to(device)
        if "grad" in protection.resources:
            out.resources["grad"] = proxy_gradient(proxy, proxy_id, model, tokenizer, teacher_name,
                                                   cache_dir=cache_dir, progress=progress, mode=protection.grad,
                                                   task=task)
    return out


def check_inputs(protection, records: list[dict], topk_logprobs: int, task=None) -> None:
    """Refuse, before anything is written, what a protection cannot do with these inputs."""
    if protection.acts_on != "text":
        return
    if topk_logprobs:
        raise UserError(f"{protection.spec} rewrites the finished text, so the teacher's log-probabilities no "
                        "longer match it; drop --topk-logprobs")
    if any("skill" not in r for r in records):
        raise UserError(f"{protection.spec}: the trace countermeasure renders the traces of a task's prompts only; "
                        "give --prompts N (the task's prompts), not a prompt file")
    reason = parse_task(task).supports(f"trace:keep={protection.keep}")
    if reason:
        raise UserError(f"{protection.spec}: {reason}")
