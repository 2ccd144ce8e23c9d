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

At a converged first-pass student d is heavy-tailed (z up to 7-13 on the evidence bench), and
exp(beta z) then puts nearly all the weight on a few traces: an effective sample size of 581 and 2
of 20,000 traces in results/evidence, whose students collapse. `weights=rank` (added after seeing
that) uses the normal score of d's rank instead of z: the same ordering, bounded weights, an
effective size near n exp(-beta^2) (37% of the traces at beta = 1).
"""
from __future__ import annotations

import numpy as np
import torch

from ..batching import batches, record_features


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
    feats = record_features(records, tokenizer)
    out = []
    for batch in batches(feats, tokenizer.pad_token_id, batch_size):
        s, n = _token_losses(model, batch)
        out.append((s / n.clamp_min(1)).double().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


def holdout_direction(model, holdout: list[dict], tokenizer, *, batch_size: int = 32) -> list[torch.Tensor]:
    """The unit gradient of the token-mean hold-out loss, one tensor per trainable parameter."""
    params = [p for p in model.parameters() if p.requires_grad]
    feats = record_features(holdout, tokenizer)
    total = sum(len(f["input_ids"]) - f["n_prompt"] for f in feats)
    model.zero_grad(set_to_none=True)
    was_training = model.training
    model.eval()
    for batch in batches(feats, tokenizer.pad_token_id, batch_size):
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


def trace_weights(derivatives: np.ndarray, beta: float, by: str = "score") -> np.ndarray:
    """exp(beta z) normalised to mean 1 (equal weights when d is constant). `score`: z = d / std(d);
    `rank`: z = the standard normal quantile of d's mid-rank, which bounds the weights and keeps the
    effective sample size near n exp(-beta^2) whatever the tails of d (ties share their mean rank)."""
    d = np.asarray(derivatives, dtype=float)
    sd = d.std()
    if sd == 0:
        return np.ones_like(d)
    if by == "rank":
        from scipy.stats import norm, rankdata

        z = norm.ppf((rankdata(d) - 0.5) / len(d))
    elif by == "score":
        z = d / sd
    else:
        raise ValueError(f"weights must be 'score' or 'rank', got {by!r}")
    w = np.exp(beta * (z - z.max()))
    return w / w.mean()


def effective_size(weights) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2: how many equally weighted traces the
    weighted corpus is worth."""
    w = np.asarray(weights, dtype=float)
    return float(w.sum() ** 2 / (w ** 2).sum()) if len(w) and (w ** 2).sum() > 0 else 0.0


def reweight(records: list[dict], model, tokenizer, holdout: list[dict], *, eps: float = 1e-3, beta: float = 1.0,
             by: str = "score", batch_size: int = 32) -> list[dict]:
    """The records with a `weight` (mean 1) and the measured `derivative`, for weighted SFT."""
    d = directional_derivatives(model, records, holdout, tokenizer, eps=eps, batch_size=batch_size)
    w = trace_weights(d, beta, by)
    return [{**r, "weight": float(wi), "derivative": float(di)} for r, wi, di in zip(records, w, d)]
