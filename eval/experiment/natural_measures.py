"""The measures and the report of `antidistill natural` (the planner and its config: natural.py).

- `detect_table`: single-text TPR at FPR alpha after n tokens, with and without the entropy-aware rule
  (the unprotected teacher as reference, prefix only); the `none` corpus is the null.
- `quality_table`: the legitimate user's cost (perplexity under the unprotected teacher, MiniLM
  similarity to the unprotected answer, distinct-2, length, gsm_symbolic accuracy).
- `audit_rows`: one fine-tuned student audited in reading and generation mode, with wrong-key nulls.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

from antidistill.students.tasks.prompts import gsm_correct
from antidistill.watermark import parse_protection
from antidistill.watermark.entropy import ChoiceRule, reference_uncertainty

from ..measures.audit import generation_tuples, reading_tuples, score
from ..measures.quality import perplexity
from ..measures.similarity import MiniLM
from ..measures.stats import distinct_n, tpr_at_alpha
from .report import md_table

RESAMPLE = "none (another sample)"


# ---------------------------------------------------------------- detection against length


def _per_text(values: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    return np.split(values, np.cumsum(lengths)[:-1]) if lengths else []


def _uncertainty(teacher, records: dict) -> dict:
    """The reference's top-1 probability and entropy at every completion position of each corpus:
    prompts are longer than any window, so every position is scored whatever h, and one reading
    serves every detector."""
    out = {}
    for spec, recs in records.items():
        if spec == RESAMPLE:
            continue
        seqs = [r["completion_ids"] for r in recs]
        top1, ent = reference_uncertainty(teacher, seqs, [r["prompt_ids"] for r in recs], 0, batch_size=8)
        out[spec] = (top1, ent, [len(s) for s in seqs])
    return out


def _log10_ps(det, seqs, prompts, masks, n: int, filtered: bool) -> np.ndarray:
    """log10 p of each text at least n tokens long, cut to its first n tokens."""
    idx = [i for i, s in enumerate(seqs) if len(s) >= n]
    cut = [seqs[i][:n] for i in idx]
    kw = {"keep": np.concatenate([masks[i][:n] for i in idx])} if filtered and idx else {}
    return np.array([d.log10_p for d in det.detect_each(cut, [prompts[i] for i in idx], **kw)])


def detect_table(teacher, records: dict, key, alpha: float, lengths, rule: ChoiceRule) -> pd.DataFrame:
    """TPR at alpha of single texts cut to their first n completion tokens (texts at least n long),
    with and without the reference rule; the `none` corpus's flag rate is the empirical FPR."""
    uncertainty = _uncertainty(teacher, records)
    rows = []
    for spec, recs in records.items():
        if spec in ("none", RESAMPLE):
            continue
        protection = parse_protection(spec)
        det = protection.detector(key)
        # SWEET text (kgw entropy=H) is scored where it was biased: reference entropy >= H
        sweet = getattr(protection, "entropy", 0.0)
        rule_here = ChoiceRule(min_entropy=sweet) if sweet else rule

        def masks(name):
            top1, ent, lens = uncertainty[name]
            return _per_text(rule_here.apply(top1, ent)[0], lens)

        sides = {side: ([r["completion_ids"] for r in rs], [r["prompt_ids"] for r in rs], masks(name))
                 for side, rs, name in (("pos", recs, spec), ("neg", records["none"], "none"))}
        for n in lengths:
            for filtered in (False, True):
                lp = {side: _log10_ps(det, *args, n, filtered) for side, args in sides.items()}
                r = tpr_at_alpha(lp["pos"], lp["neg"], alpha)
                rows.append({"protection": spec, "tokens": n, "rule": rule_here.describe() if filtered else "all",
                             "n_pos": len(lp["pos"]), "n_neg": len(lp["neg"]), f"tpr@{alpha:g}": r["tpr"],
                             f"fpr@{alpha:g}": r["fpr"],
                             "median_log10_p": float(np.median(lp["pos"])) if len(lp["pos"]) else math.nan})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- legitimate-user cost


def quality_table(teacher, records: dict, prompts: list[dict], device, bar=None) -> pd.DataFrame:
    encoder = MiniLM(device)
    raw = {r["id"]: r for r in records["none"]}
    answers = [p.get("answer") for p in prompts]
    rows = []
    for spec, recs in records.items():
        seqs = [r["completion_ids"] for r in recs]
        sims = encoder.similarity([r["completion"] for r in recs], [raw[r["id"]]["completion"] for r in recs])
        gsm = [gsm_correct(r["completion"], a) for r, a in zip(recs, answers) if a is not None]
        rows.append({"protection": spec, "n": len(recs),
                     "perplexity": perplexity(teacher, [r["prompt_ids"] for r in recs], seqs, batch_size=8),
                     "minilm_similarity_to_raw": float(np.mean(sims)), "distinct_2": distinct_n(seqs, 2),
                     "mean_tokens": float(np.mean([len(s) for s in seqs])),
                     "gsm_accuracy": float(np.mean(gsm)) if gsm else math.nan, "n_gsm": len(gsm)})
        if bar is not None:
            bar.update(1)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- radioactivity


def audit_rows(suspect, tok, det, nulls, h: int, texts, audit_prompt_ids, cfg, lead: dict,
               train_seconds) -> list[dict]:
    """The suspect audited in reading mode (the protected texts) and generation mode (held-out
    prompts), each with the same tuples under the wrong keys `nulls`; `cfg` a NaturalConfig, `lead`
    the row's first columns."""
    rows = []
    for mode in ("reading", "generation"):
        t0 = time.perf_counter()
        if mode == "reading":
            tuples = reading_tuples(suspect, texts, h, batch_size=8)
        else:
            tuples, _ = generation_tuples(suspect, tok, audit_prompt_ids, h,
                                          max_new_tokens=cfg.audit_max_new_tokens, seed=cfg.seed,
                                          temperature=cfg.temperature, batch_size=cfg.batch_size)
        res = score(det, tuples, mode=mode)
        null_p = [score(d, tuples, mode=mode).detection.log10_p for d in nulls]
        rows.append({**lead, "mode": mode, "log10_p": res.detection.log10_p, "n_scored": res.detection.n_scored,
                     "radioactive": res.detection.significant(cfg.alpha),
                     "null_min_log10_p": min(null_p) if null_p else math.nan,
                     "null_flagged": int(sum(p < math.log10(cfg.alpha) for p in null_p)),
                     "train_seconds": train_seconds, "audit_seconds": round(time.perf_counter() - t0, 2)})
    return rows


# ---------------------------------------------------------------- report


def report(meta: dict, detect_df: pd.DataFrame, quality_df: pd.DataFrame, radio_df: pd.DataFrame) -> str:
    cfg = meta["config"]
    stage_lines = "\n".join(f"| {s['stage']} | {s['seconds']:.0f} |" for s in meta["stages"])
    return f"""# Natural-language run: {cfg['name']}

Teacher {cfg['teacher']} on {cfg['n_instructions']} instruction prompts and {cfg['n_gsm']} gsm_symbolic
problems, up to {cfg['max_new_tokens']} new tokens, device {meta['device']}, key {meta['key_fingerprint']};
{meta['wall_seconds']:.0f} s in all. Produced by `antidistill natural --preset {meta['preset']}`.

## Single-text detection against length (alpha = {cfg['alpha']:g})

Texts cut to their first n completion tokens (only texts at least n long: n_pos, n_neg). `rule`:
`all` scores every position; otherwise only the positions where the unprotected teacher (reference,
prefix only) is unsure. fpr is the flag rate on the unprotected corpus under the same rule.

{md_table(detect_df)}

## Legitimate-user cost

Perplexity under the unprotected teacher, MiniLM cosine similarity to the unprotected answer to the
same prompt, distinct-2 over all outputs, mean length, gsm_symbolic accuracy (last number). The
row `{RESAMPLE}` is the unprotected teacher sampled again with another seed: the
similarity and spread a protection must be compared with.

{md_table(quality_df)}

## Radioactivity ({cfg['radio_protection']}, LoRA {cfg['lora']}, {cfg['train_epochs']} epochs)

rho: protected fraction of the fine-tuning set (the rest raw outputs of the same prompts); rho = 0
is the null student. null columns: the same tuples under {cfg['null_keys']} wrong keys.

{md_table(radio_df)}

## Wall time per stage (s)

| stage | seconds |
|---|---|
{stage_lines}
"""
