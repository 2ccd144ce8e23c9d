"""Radioactivity audit (auditors): was a suspect model trained on our protected outputs?

Two ways to collect (context window, token) tuples from the suspect, then one exact, deduplicated
test of those tuples against the key:

- *reading mode* (open weights): teacher-force the auditor's protected texts through the suspect
  and take its top-1 prediction at each completion position; the tuple is (the h tokens of the
  input text before that position, the predicted token). Only *fresh windows* are scored: positions
  whose window has not already preceded a generated token earlier in the same text. Why: the text
  is watermarked, so once a window w has occurred, the token the teacher wrote after it carries
  w's green list, and a suspect that never saw the key can still copy it (in-context induction) —
  such a clean model would look radioactive. At a fresh window the suspect's prediction is a
  function of a prefix that never depended on w's green list, so its score is an exact uniform
  draw under H0 (whatever the text's own next token is). Excluding instead the predictions that
  equal the text's own tuples is *not* valid: it selects against green tuples (the watermark
  pushed the text away from red predictions) and makes p-values far from uniform. For h = 0
  (unigram) one green list governs every token, so only the first position of each text is fresh:
  reading mode has almost no power there; use generation mode.
- *generation mode* (black box): prompt the suspect, sample, and score what it wrote, pooled over
  all outputs, excluding tuples that already occur in the prompts.

Optionally (filter phi) only tuples whose (h+1)-gram is among the k most frequent in the protected
corpus are scored: that is where a student's learned bias concentrates. Null controls reuse the
same tuples: wrong keys (and, in the runner, a student trained on raw outputs) must give p-values
that behave as uniform. Under H0 each distinct PRF input is one independent draw, so the p-value is
exact; dedup is on by default and turning it off warns (repeats then look watermarked).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from antidistill.watermark.detection import DEDUP_OFF_WARNING, Detection, extract_windows, first_occurrence

MODES = ("reading", "generation")
READING_RULES = ("fresh-window", "own-tuples", "none")


@dataclass
class Tuples:
    """(context, token) tuples collected from a suspect, in order, and which to leave out."""

    contexts: np.ndarray  # int64 [N, h]
    tokens: np.ndarray  # int64 [N]
    exclude: np.ndarray | None = None  # bool [N]: drop (e.g. the tuple occurs in a prompt)
    n_texts: int = 0
    exclude_pairs: tuple | None = None  # (contexts, tokens) whose PRF inputs are excluded (prompts)
    seq_index: np.ndarray | None = None  # int64 [N]: the text each tuple came from (reading mode)
    text_tokens: np.ndarray | None = None  # int64 [N]: the text's own token at that position
    fresh: np.ndarray | None = None  # bool [N]: the window did not precede a generated token earlier in the text


@dataclass
class AuditResult:
    detection: Detection
    curve: pd.DataFrame  # n_scored, log10_p
    mode: str
    n_texts: int
    extra: dict = field(default_factory=dict)

    def verdict(self, alpha: float) -> str:
        return "RADIOACTIVE" if self.detection.significant(alpha) else "NOT DETECTED"


# ---------------------------------------------------------------- collecting tuples


def _teacher_forced(model, texts: list[tuple[list, list]], batch_size: int):
    """Yield (start, chunk, right-padded ids, logits) for batches of (prompt, completion) texts."""
    device = next(model.parameters()).device
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        seqs = [p + c for p, c in chunk]
        width = max(len(s) for s in seqs)
        if width < 2:
            continue
        ids = torch.zeros((len(seqs), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        yield start, chunk, ids, model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits


@torch.no_grad()
def reading_tuples(model, texts, h: int, *, batch_size: int = 16) -> Tuples:
    """Teacher-force (prompt_ids, completion_ids) pairs; at each completion position t take the
    suspect's top-1 prediction and pair it with the input text's tokens [t-h, t)."""
    ctx_parts, tok_parts, own_parts, seq_parts = [], [], [], []
    texts = [(list(p), list(c)) for p, c in texts]
    for start, chunk, ids, logits in _teacher_forced(model, texts, batch_size):
        pred = logits.argmax(-1).cpu().numpy()  # pred[:, t - 1] predicts position t
        arr = ids.numpy()
        for i, (p, c) in enumerate(chunk):
            lo, hi = max(len(p), h, 1), len(p) + len(c)
            if hi <= lo:
                continue
            pos = np.arange(lo, hi)
            tok_parts.append(pred[i, pos - 1])
            own_parts.append(arr[i, pos])
            seq_parts.append(np.full(len(pos), start + i, dtype=np.int64))
            ctx_parts.append(arr[i, pos[:, None] + np.arange(-h, 0)] if h else np.zeros((len(pos), 0), np.int64))
    if not tok_parts:
        return Tuples(np.zeros((0, h), np.int64), np.zeros(0, np.int64), n_texts=len(texts))
    contexts = np.concatenate(ctx_parts).astype(np.int64)
    seq_index = np.concatenate(seq_parts)
    key = pd.DataFrame(np.concatenate([seq_index[:, None], contexts], axis=1))
    fresh = ~key.duplicated(keep="first").to_numpy() if h else ~pd.Series(seq_index).duplicated().to_numpy()
    return Tuples(contexts, np.concatenate(tok_parts).astype(np.int64), n_texts=len(texts), seq_index=seq_index,
                  text_tokens=np.concatenate(own_parts).astype(np.int64), fresh=fresh)


@torch.no_grad()
def reference_top1(model, texts, h: int, *, batch_size: int = 16) -> np.ndarray:
    """Choice-point filter: the reference model's top-1 probability for each completion position
    (the same positions, in the same order, as `reading_tuples` / generation-mode windows).

    A position where the reference (the auditor's own unprotected teacher) is nearly certain is a
    forced token (a digit, the trace's structure) that carries no watermark; keeping positions with
    top-1 probability below a threshold scores only the choices where a watermark can live. The
    filter reads the prefix only, never the scored token, so under H0 it selects independently of
    the key and the test stays exact."""
    out = []
    texts = [(list(p), list(c)) for p, c in texts]
    for _, chunk, _, logits in _teacher_forced(model, texts, batch_size):
        top1 = torch.softmax(logits.float(), dim=-1).amax(-1).cpu().numpy()
        for i, (p, c) in enumerate(chunk):
            lo, hi = max(len(p), h, 1), len(p) + len(c)
            if hi > lo:
                out.append(top1[i, np.arange(lo, hi) - 1])
    return np.concatenate(out) if out else np.zeros(0)


def generation_tuples(model, tokenizer, prompt_ids, h: int, *, max_new_tokens: int = 128,
                      temperature: float = 1.0, seed: int = 0, batch_size: int = 32,
                      exclude_prompt_windows: bool = True) -> tuple[Tuples, list[list[int]]]:
    """Sample the suspect on the prompts; tuples of its completions (windows may reach into the
    prompt). Returns the tuples and the completions."""
    from antidistill.students.sampling import generate_batch

    completions = []
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("generation-mode audit needs non-empty prompts")
    for start in range(0, len(prompt_ids), batch_size):
        chunk = prompt_ids[start:start + batch_size]
        out = generate_batch(model, tokenizer, chunk, max_new_tokens=max_new_tokens, do_sample=True,
                             temperature=temperature, seed=seed + start)
        completions += out.completions
    comp, prm = extract_windows(completions, prompt_ids, h)
    t = Tuples(comp.contexts, comp.tokens, n_texts=len(prompt_ids))
    if exclude_prompt_windows and len(prm.tokens):
        t.exclude_pairs = (prm.contexts, prm.tokens)
    return t, completions


def frequent_kgrams(sequences, prompts, h: int, k: int) -> set:
    """Filter phi: the k most frequent (h+1)-grams (window + token) of the protected corpus."""
    comp, _ = extract_windows(sequences, prompts, h)
    grams = np.concatenate([comp.contexts, comp.tokens[:, None]], axis=1)
    counts = pd.Series([tuple(g) for g in grams.tolist()]).value_counts(sort=True)
    return set(counts.index[:k])


def phi_mask(t: Tuples, grams: set) -> np.ndarray:
    rows = np.concatenate([t.contexts, t.tokens[:, None]], axis=1).tolist()
    return np.array([tuple(r) in grams for r in rows], dtype=bool)


# ---------------------------------------------------------------- scoring


def score(detector, t: Tuples, *, dedup: bool = True, max_tuples: int | None = None, keep: np.ndarray | None = None,
          points: int = 50, mode: str = "reading", reading_rule: str = "fresh-window") -> AuditResult:
    """Exact pooled test of the tuples: exclusions, then first occurrence of each PRF input, then
    at most `max_tuples` in order; with the running log10 p against tuples scored.

    `reading_rule` (reading-mode tuples only): "fresh-window" (valid, the default); "own-tuples"
    (drop predictions equal to the text's own tuples) and "none" (score every prediction) are not
    valid under H0 and exist only so the null benchmark can show why."""
    if reading_rule not in READING_RULES:
        raise ValueError(f"reading_rule must be one of {READING_RULES}, got {reading_rule!r}")
    n = len(t.tokens)
    h = detector.h
    inputs = _prf(detector, t.contexts.reshape(n, h), t.tokens)
    ident = inputs.astype(np.int64)
    mask = np.ones(n, dtype=bool)
    if t.exclude is not None:
        mask &= ~t.exclude
    if t.exclude_pairs is not None and n:
        pc, pt = t.exclude_pairs
        mask &= ~np.isin(ident, _prf(detector, pc.reshape(len(pt), h), pt).astype(np.int64))
    if t.fresh is not None and n and reading_rule == "fresh-window":
        mask &= t.fresh
    if t.text_tokens is not None and n and reading_rule == "own-tuples":
        own = _prf(detector, t.contexts.reshape(n, h), t.text_tokens).astype(np.int64)
        mask &= ~np.isin((t.seq_index << 32) | ident, (t.seq_index << 32) | own)
    if keep is not None:
        mask &= keep
    if dedup:
        # First occurrence among the tuples that are scored at all.
        sel = np.flatnonzero(mask)
        sel = sel[first_occurrence(ident[sel])]
    else:
        warnings.warn(DEDUP_OFF_WARNING, stacklevel=2)
        sel = np.flatnonzero(mask)
    if max_tuples is not None:
        sel = sel[:max_tuples]
    scores = _scores(detector, inputs[sel])
    det = detector.verdict(float(np.sum(scores)), len(scores), n_tuples=n, dedup=dedup)
    return AuditResult(det, running_curve(detector, scores, dedup=dedup, points=points), mode, t.n_texts)


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _prf(detector, contexts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """PRF inputs of (context, token) tuples (numpy in and out; older torch-based detectors too)."""
    contexts = np.ascontiguousarray(contexts, dtype=np.int64)
    tokens = np.ascontiguousarray(tokens, dtype=np.int64)
    if len(tokens) == 0:
        return np.zeros(0, dtype=np.int64)
    try:
        return _np(detector.prf_inputs(contexts, tokens))
    except (TypeError, AttributeError):
        return _np(detector.prf_inputs(torch.from_numpy(contexts), torch.from_numpy(tokens)))


def _scores(detector, inputs: np.ndarray) -> np.ndarray:
    if len(inputs) == 0:
        return np.zeros(0)
    try:
        return np.asarray(_np(detector.tuple_scores(inputs)), dtype=float)
    except (TypeError, AttributeError):
        return np.asarray(_np(detector.tuple_scores(torch.from_numpy(inputs.astype(np.int64)))), dtype=float)


def running_curve(detector, scores, *, dedup: bool = True, points: int = 50) -> pd.DataFrame:
    """log10 p of the first n scored tuples, at ~`points` values of n (geometric)."""
    scores = np.asarray(scores, dtype=float)
    if len(scores) == 0:
        return pd.DataFrame({"n_scored": pd.Series(dtype=int), "log10_p": pd.Series(dtype=float)})
    sizes = np.unique(np.geomspace(1, len(scores), num=points).round().astype(int))
    cum = np.cumsum(scores)
    return pd.DataFrame({"n_scored": sizes,
                         "log10_p": [detector.verdict(float(cum[k - 1]), int(k), dedup=dedup).log10_p for k in sizes]})


def format_p(log10_p: float) -> str:
    """A p-value for people: 3.2e-12, or 10^-412.3 where a double underflows."""
    if log10_p > -300:
        return f"{10 ** log10_p:.3g}"
    return f"10^{log10_p:.1f}"


def wrong_keys(n: int, salt: str = "antidistill/null-key"):
    """n fixed, public wrong keys for null controls (never the real key)."""
    from antidistill.watermark import Key

    return [Key.from_text(f"{salt}/{i}") for i in range(n)]


def summary_line(result: AuditResult, alpha: float) -> str:
    d = result.detection
    return (f"{result.verdict(alpha)} at alpha={alpha:g}: p = {format_p(d.log10_p)} (log10 p = {d.log10_p:.2f}), "
            f"{d.n_scored} tuples scored of {d.n_tuples} ({result.mode} mode, {result.n_texts} texts, "
            f"key {d.key_fingerprint}, dedup {'on' if d.dedup else 'OFF'})")


def ln_alpha(alpha: float) -> float:
    return math.log10(alpha)
