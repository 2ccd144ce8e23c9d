"""Teacher quality (product teams): what a protection costs legitimate answers.

Per protection, on the same prompts as the unprotected teacher: task accuracy (exact match), the
perplexity of the outputs under a reference model, distinct-n diversity, mean length, and an exact
paired test of per-item correctness against `none`, so "no measurable cost" is a tested statement.
For capability-denying countermeasures also the share of the reasoning a user still sees (`trace`
withholds or thins it) and the forward passes of extra models each generated token costs.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from antidistill.students.tasks.registry import parse_task
from antidistill.watermark import parse_protection

from .stats import clopper_pearson, distinct_n, next_token_entropy, paired_exact_test


def correctness(records, task=None) -> pd.DataFrame:
    """Per-record correctness (full credit from `task`'s grader; default the demo suite's exact match)
    of corpus records with `skill` and `answer` fields."""
    task = parse_task(task)
    rows = []
    for r in records:
        if "skill" not in r or "answer" not in r or not task.graded(r):  # e.g. an open instruction
            continue
        rows.append({"id": r["id"], "skill": r["skill"], "correct": task.correct(r, r["completion"])})
    return pd.DataFrame(rows, columns=["id", "skill", "correct"])


@torch.no_grad()
def perplexity(model, prompts, completions, *, batch_size: int = 64, eos_id: int | None = None) -> float:
    """exp(mean NLL per completion token) of `completions` given `prompts` (token ids) under `model`.

    With `eos_id`, the EOS that ended each completion is scored too (the model must also stop well).
    Texts are batched in order of length, so batches carry little padding.
    """
    device = next(model.parameters()).device
    total_nll, total_tok = 0.0, 0
    items = sorted(((list(p), list(c) + ([eos_id] if eos_id is not None else []))
                    for p, c in zip(prompts, completions)), key=lambda pc: len(pc[0]) + len(pc[1]))
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        width = max(len(p) + len(c) for p, c in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        target = torch.zeros((len(chunk), width), dtype=torch.bool)
        for i, (p, c) in enumerate(chunk):
            seq = p + c
            ids[i, :len(seq)] = torch.tensor(seq)
            mask[i, :len(seq)] = 1
            target[i, len(p):len(seq)] = True
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().cpu()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        nll = -logp.gather(-1, ids[:, 1:, None])[..., 0]
        tmask = target[:, 1:]
        total_nll += float(nll[tmask].sum())
        total_tok += int(tmask.sum())
    return math.exp(total_nll / total_tok) if total_tok else float("nan")


def perplexity_sample(records: list[dict], n: int, seed: int = 0) -> set:
    """The ids of `n` records drawn at random (all when n is 0 or at least their number): the same
    ids in every corpus of a run, so perplexities compare on the same prompts."""
    ids = [r["id"] for r in records]
    if not n or n >= len(ids):
        return set(ids)
    return {ids[i] for i in np.random.default_rng(seed).choice(len(ids), size=n, replace=False)}


def teacher_quality(corpora: dict[str, list[dict]], *, baseline: str = "none", reference=None,
                    eos_id: int | None = None, ngram: tuple[int, ...] = (2, 3), task=None,
                    encoder=None, perplexity_texts: int = 0) -> pd.DataFrame:
    """One row per protection: accuracy (+ exact 95% CI), paired exact test vs `baseline` on the
    prompts both answered, perplexity under `reference` (a model, optional; the runner gives the
    unprotected teacher), distinct-n, next-token entropy given the previous token (bits), mean length
    (tokens), mean share of the reasoning shown (1 unless a `trace` countermeasure withheld some) and
    extra forward passes per token. With `encoder` (a `similarity.MiniLM`), also the mean cosine
    similarity of each answer to `baseline`'s answer to the same prompt (free-form answers, where
    accuracy says little). Perplexity is over `perplexity_texts` prompts drawn at random, the same in
    every corpus (0: all; its standard error over 2,000 texts is far below the differences it shows).

    `corpora` maps a protection spec to its corpus records (same prompt ids across corpora).
    """
    if baseline not in corpora:
        raise ValueError(f"baseline {baseline!r} is not among the corpora {list(corpora)}")
    base = correctness(corpora[baseline], task).set_index("id")
    sample = perplexity_sample(corpora[baseline], perplexity_texts)
    rows = []
    for spec, records in corpora.items():
        corr = correctness(records, task)
        k, n = int(corr["correct"].sum()), len(corr)
        lo, hi = clopper_pearson(k, n)
        joined = corr.set_index("id").join(base["correct"].rename("base"), how="inner")
        test = paired_exact_test(joined["correct"].to_numpy(), joined["base"].to_numpy())
        comps = [r["completion_ids"] for r in records]
        row = {"protection": spec, "n": n, "accuracy": k / n if n else float("nan"), "acc_lo": lo, "acc_hi": hi,
               "delta_vs_none": (k / n if n else float("nan")) - float(joined["base"].mean()) if len(joined) else float("nan"),
               "wins_vs_none": test["a_only"], "losses_vs_none": test["b_only"], "p_paired": test["p_value"],
               "mean_length": float(np.mean([len(c) for c in comps])) if comps else float("nan")}
        seen = [r.get("reasoning_seen", 1.0) for r in records]
        row["reasoning_seen"] = float(np.mean(seen)) if seen else float("nan")
        row["extra_forwards_per_token"] = parse_protection(spec).extra_forwards
        for m in ngram:
            row[f"distinct_{m}"] = distinct_n(comps, m)
        row["next_token_entropy"] = next_token_entropy(comps)
        if encoder is not None:
            raw = {r["id"]: r["completion"] for r in corpora[baseline]}
            pairs = [(r["completion"], raw[r["id"]]) for r in records if r["id"] in raw]
            sims = encoder.similarity([a for a, _ in pairs], [b for _, b in pairs]) if pairs else []
            row["similarity_to_none"] = float(np.mean(sims)) if len(sims) else float("nan")
        if reference is not None:
            scored = [r for r in records if r["id"] in sample]
            row["perplexity"] = perplexity(reference, [r["prompt_ids"] for r in scored],
                                           [r["completion_ids"] for r in scored], eos_id=eos_id)
            row["perplexity_n"] = len(scored)
        rows.append(row)
    return pd.DataFrame(rows)
