"""Strategic reweighting: the adaptive student of the distillation game (arXiv 2605.22737).

The attacker holds a small hold-out set it trusts (verified, clean) and a student (e.g. one pass of
training on the collected corpus). For each collected trace i it measures how much a step on i
would lower the hold-out loss: the directional derivative of the trace's loss L_i along the unit
hold-out gradient g,

    d_i = (L_i(theta + eps g) - L_i(theta - eps g)) / (2 eps)  ~  grad L_i . g,

two forward passes over the corpus at perturbed weights and one backward pass over the hold-out
set, never a per-trace gradient. A step on trace i changes the hold-out loss by about
-lr |grad L_H| d_i, so traces with large d_i teach what the hold-out set needs and traces a
capability-denying defence corrupted point elsewhere. Weights are exp(beta z_i) normalised to
mean 1, as in the paper's code (ysfalh/distillation-game: exp(beta a_i), mean 1), except that
z_i = d_i / std(d) is standardised so that beta means the same for any model size; beta = 0 is
plain SFT. The paper takes the gradient at a pretrained student's initial checkpoint; a student
trained from scratch has nothing to say there, so the evidence pipeline and the runner take it at
a first-pass student (trained on the unweighted corpus).
"""
from __future__ import annotations

import numpy as np
import torch

from ..distill import Collator, _features


def _batches(feats, pad_id: int, batch_size: int):
    collate = Collator(pad_id, kd=False)
    for start in range(0, len(feats), batch_size):
        yield collate(feats[start:start + batch_size])


def _token_losses(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example summed next-token NLL over the completion and its number of tokens."""
    device = next(model.parameters()).device
    logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
    labels = batch["labels"][:, 1:].to(device)
    lp = torch.log_softmax(logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    mask = labels != -100
    nll = -lp.gather(-1, labels.clamp_min(0)[..., None])[..., 0] * mask
    return nll.sum(1), mask.sum(1)


@torch.no_grad()
def example_losses(model, records: list[dict], tokenizer, *, batch_size: int = 32) -> np.ndarray:
    """Mean completion-token NLL of each record under `model` (the SFT loss of that trace alone)."""
    feats = _features(records, tokenizer, "sft", False, 10**9)
    out = []
    for batch in _batches(feats, tokenizer.pad_token_id, batch_size):
        s, n = _token_losses(model, batch)
        out.append((s / n.clamp_min(1)).double().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


def holdout_direction(model, holdout: list[dict], tokenizer, *, batch_size: int = 32) -> list[torch.Tensor]:
    """The unit gradient of the token-mean hold-out loss, one tensor per trainable parameter."""
    params = [p for p in model.parameters() if p.requires_grad]
    feats = _features(holdout, tokenizer, "sft", False, 10**9)
    total = sum(len(f["input_ids"]) - f["n_prompt"] for f in feats)
    model.zero_grad(set_to_none=True)
    was_training = model.training
    model.eval()
    for batch in _batches(feats, tokenizer.pad_token_id, batch_size):
        s, _ = _token_losses(model, batch)
        (s.sum() / max(total, 1)).backward()
    model.train(was_training)
    grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]
    model.zero_grad(set_to_none=True)
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
    if norm == 0:
        return grads
    return [g / norm.to(g.dtype) for g in grads]


@torch.no_grad()
def directional_derivatives(model, records: list[dict], holdout: list[dict], tokenizer, *, eps: float = 1e-3,
                            batch_size: int = 32) -> np.ndarray:
    """d_i for every record: central finite difference of its loss along the unit hold-out gradient."""
    with torch.enable_grad():
        direction = holdout_direction(model, holdout, tokenizer, batch_size=batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    try:
        for p, g in zip(params, direction):
            p.add_(g, alpha=eps)
        plus = example_losses(model, records, tokenizer, batch_size=batch_size)
        for p, s, g in zip(params, saved, direction):
            p.copy_(s).add_(g, alpha=-eps)
        minus = example_losses(model, records, tokenizer, batch_size=batch_size)
    finally:
        for p, s in zip(params, saved):
            p.copy_(s)
    return (plus - minus) / (2 * eps)


def trace_weights(derivatives: np.ndarray, beta: float) -> np.ndarray:
    """exp(beta z) normalised to mean 1, z = d / std(d) (equal weights when d is constant)."""
    d = np.asarray(derivatives, dtype=float)
    sd = d.std()
    z = d / sd if sd > 0 else np.zeros_like(d)
    w = np.exp(beta * (z - z.max()))
    return w / w.mean()


def reweight(records: list[dict], model, tokenizer, holdout: list[dict], *, eps: float = 1e-3, beta: float = 1.0,
             batch_size: int = 32) -> list[dict]:
    """The records with a `weight` (mean 1) and the measured `derivative`, for weighted SFT."""
    d = directional_derivatives(model, records, holdout, tokenizer, eps=eps, batch_size=batch_size)
    w = trace_weights(d, beta)
    return [{**r, "weight": float(wi), "derivative": float(di)} for r, wi, di in zip(records, w, d)]
