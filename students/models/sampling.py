"""Batched generation shared by corpus generation, teacher grading and student sampling."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LogitsProcessorList

from ..batching import left_pad


@dataclass
class Batch:
    """What one generated batch owns: the completions, why each stopped, optional top-k log-probs."""

    completions: list[list[int]]  # generated ids, EOS and padding stripped
    stops: list[str]  # "eos" or "length"
    topk_ids: list[list[list[int]]] | None = None  # per generated position (EOS included when hit)
    topk_logprobs: list[list[list[float]]] | None = None
    n_tokens: int = 0  # generated tokens, EOS included: what a tokens/s figure counts


@torch.no_grad()
def generate_batch(model, tokenizer, prompt_ids: list[list[int]], *, max_new_tokens: int = 128,
                   do_sample: bool = True, temperature: float = 1.0, processor=None, topk: int = 0,
                   seed: int | None = None, top_p: float = 1.0) -> Batch:
    """Generate continuations of a batch of prompts (left-padded), full-vocabulary sampling.

    `top_p` < 1 samples from the nucleus (an attacker's decoding; corpora keep the full vocabulary).
    With `seed`, sampling draws from a private generator state, so the result depends on the seed
    and the batch only, not on what ran before. `topk` > 0 also returns the top-k log-probabilities
    of the distribution each token was sampled from (after protection and temperature); for a
    processor that picks the token itself (its scores are one-hot) the teacher's tempered
    distribution is stored instead, since that is what it samples from.
    """
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id
    eos_id = tokenizer.eos_token_id
    ids, mask = left_pad(prompt_ids, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=eos_id,
                  attention_mask=mask, return_dict_in_generate=True)
    if do_sample:
        kwargs.update(do_sample=True, temperature=temperature, top_k=0, top_p=top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
    if processor is not None:
        kwargs["logits_processor"] = LogitsProcessorList([processor])
    if topk:
        kwargs.update(output_scores=True, output_logits=True)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if seed is not None:
            torch.manual_seed(seed)
        out = model.generate(ids, **kwargs)
    new = out.sequences[:, ids.shape[1]:].cpu()
    # First EOS per row (or the full width when none): everything after it is padding.
    is_eos = new == eos_id
    has_eos = is_eos.any(dim=1)
    first = torch.where(has_eos, is_eos.int().argmax(dim=1), torch.full_like(has_eos, new.shape[1], dtype=torch.long))
    lengths = first.tolist()
    rows = new.tolist()
    completions = [row[:n] for row, n in zip(rows, lengths)]
    stops = ["eos" if h else "length" for h in has_eos.tolist()]
    n_tokens = int(sum(lengths) + int(has_eos.sum()))
    batch = Batch(completions, stops, n_tokens=n_tokens)
    if topk:
        batch.topk_ids, batch.topk_logprobs = _topk(out, topk, temperature if do_sample else 1.0,
                                                    [n + int(h) for n, h in zip(lengths, has_eos.tolist())])
    return batch


def _topk(out, k: int, temperature: float, keep: list[int]):
    """Top-k log-probs per generated step, one step at a time (a [B, T, V] stack can be huge)."""
    ids_steps, lp_steps = [], []
    for scores, logits in zip(out.scores, out.logits):
        lp = torch.log_softmax(scores.float(), dim=-1)
        one_hot = torch.isfinite(lp).sum(-1) <= 1
        if one_hot.any():
            lp = torch.where(one_hot[:, None], torch.log_softmax(logits.float() / temperature, dim=-1), lp)
        v, i = torch.topk(lp, min(k, lp.shape[-1]), dim=-1)
        ids_steps.append(i.cpu())
        lp_steps.append(v.cpu())
    ids = torch.stack(ids_steps, dim=1)  # [B, T, k]
    lps = torch.stack(lp_steps, dim=1).clamp_min(-1e4)  # -inf is not JSON
    ids_l, lps_l = ids.tolist(), torch.round(lps * 1e4).div(1e4).tolist()
    return [r[:n] for r, n in zip(ids_l, keep)], [r[:n] for r, n in zip(lps_l, keep)]
