"""Radioactivity audit (auditors): was a suspect model trained on our protected outputs?

Two ways to collect (context window, token) tuples from the suspect, then one exact, deduplicated
test of those tuples against the key:

- *reading mode* (open weights): teacher-force the auditor's protected texts through the suspect
  and take its top-1 prediction at each completion position; the tuple is (the h tokens of the
  input text before that position, the predicted token). The text is watermarked, so a suspect
  that never saw the key can still copy what it has read (in-context induction): once a window w
  was followed by token x in the text, a clean model predicts x after w again, and (w, x) leans
  green. Scoring every prediction therefore makes clean models look radioactive. Two valid rules:
  - *fresh windows* (the default for h >= 1): score only positions whose window has not preceded
    a generated token earlier in the text. The prefix then never depended on w's green list, so
    the score is an exact uniform draw under H0, for every scheme.
  - *unseen tuples* (the default for h = 0, where only a text's first position is fresh, if the
    scheme allows it): score a prediction only if the text had not written that tuple's PRF input
    earlier. For KGW, unigram and Gumbel the chance that the sampler wrote x after w never grows
    when another candidate's tuple scores higher (`monotone_selection`); so, given the prefix,
    every tuple the text did *not* write is green with probability at most gamma (for Gumbel: its
    u is stochastically at most uniform), jointly (Harris' inequality on the independent per-tuple
    draws). The binomial / Gamma tail is then valid and conservative: it can only overstate p.
    Texts must be sampled without top-p truncation (as `antidistill generate` writes them), which
    would break the monotonicity. SynthID's tournament is not monotone: fresh windows only.
  Excluding the predictions that equal any of the text's own tuples, future ones included,
  over-corrects (it conditions on what the watermark wrote later, and leaves tuples that lean
  red), so its p-values are far from uniform; the null benchmark shows it beside the valid rules.
- *generation mode* (black box): prompt the suspect, sample (or decode greedily: temperature 0),
  and score what it wrote, pooled over all outputs, excluding tuples that already occur in the
  prompts. The suspect never saw the key's texts here, so every decoding gives an exact test.
  Sampling explores more distinct tuples; greedy decoding shows only the suspect's top choices,
  which is where a learned bias lives when the texts have little entropy (dedup counts a red
  token sampled once as much as a green one written a hundred times).

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

from antidistill.watermark.detection import DEDUP_OFF_WARNING, Detection
from antidistill.watermark.windows import extract_windows, first_occurrence
from antidistill.watermark.entropy import reference_uncertainty

MODES = ("reading", "generation")
READING_RULES = ("auto", "unseen-tuple", "fresh-window", "own-tuples", "none")


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
    """One key's audit of one suspect's tuples (`score`): the pooled verdict, the running log10 p
    against tuples scored (the radioactivity curve), the mode and how many texts the tuples came from."""

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
def reading_tuples(model, texts, h: int, *, reference=None, min_reference_prob: float = 0.02,
                   batch_size: int = 16) -> Tuples:
    """Teacher-force (prompt_ids, completion_ids) pairs; at each completion position t take the
    suspect's prediction and pair it with the input text's tokens [t-h, t).

    The prediction is the suspect's top-1 token, or, given `reference` (the auditor's unprotected
    teacher), the *contrast* choice: the token the suspect rates highest relative to the
    reference, log p_suspect - log p_reference, among tokens the reference gives at least
    `min_reference_prob`. A student that learned a watermark boosts green tokens over the
    teacher's own preference, which shows in the contrast even where its top-1 is still the
    teacher's usual choice. Under H0 the choice is a function of the prefix and of two models
    that never saw the key, which is all the reading rules need."""
    ctx_parts, tok_parts, own_parts, seq_parts = [], [], [], []
    texts = [(list(p), list(c)) for p, c in texts]
    refs = _teacher_forced(reference, texts, batch_size) if reference is not None else None
    for start, chunk, ids, logits in _teacher_forced(model, texts, batch_size):
        if refs is None:
            pred = logits.argmax(-1).cpu().numpy()  # pred[:, t - 1] predicts position t
        else:
            ref_lp = torch.log_softmax(next(refs)[3].float(), dim=-1)
            if ref_lp.shape != logits.shape:
                raise ValueError(f"reference logits {tuple(ref_lp.shape)} do not match the suspect's "
                                 f"{tuple(logits.shape)}: the models need the same vocabulary")
            gain = torch.log_softmax(logits.float(), dim=-1) - ref_lp
            # plausible: at least min_reference_prob, and always the reference's own top token
            floor = ref_lp.amax(-1, keepdim=True).clamp(max=math.log(min_reference_prob))
            pred = gain.masked_fill(ref_lp < floor, -math.inf).argmax(-1).cpu().numpy()
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
    prompts, completions = zip(*texts) if texts else ((), ())
    return reference_uncertainty(model, list(completions), list(prompts), h, batch_size=batch_size, first=1)[0]


def sample_completions(model, tokenizer, prompt_ids, *, max_new_tokens: int = 128, temperature: float = 1.0,
                       seed: int = 0, batch_size: int = 32, top_p: float = 1.0, processor=None) -> list[list[int]]:
    """The suspect's completions (token ids) of the prompts, sampled at `temperature` (0: greedy).
    `top_p` and a logits `processor` are how the suspect chooses to decode (an attacker's settings)."""
    from antidistill.students.models.sampling import generate_batch

    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("generation-mode audit needs non-empty prompts")
    completions = []
    for start in range(0, len(prompt_ids), batch_size):
        chunk = prompt_ids[start:start + batch_size]
        out = generate_batch(model, tokenizer, chunk, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                             temperature=temperature, seed=seed + start, top_p=top_p, processor=processor)
        completions += out.completions
    return completions


def window_tuples(completions, prompt_ids, h: int, *, exclude_prompt_windows: bool = True) -> Tuples:
    """Tuples of completions after their prompts (windows may reach into the prompt); with
    `exclude_prompt_windows`, the prompts' own (window, token) pairs are excluded when scored."""
    comp, prm = extract_windows(completions, prompt_ids, h)
    t = Tuples(comp.contexts, comp.tokens, n_texts=len(prompt_ids))
    if exclude_prompt_windows and len(prm.tokens):
        t.exclude_pairs = (prm.contexts, prm.tokens)
    return t


def generation_tuples(model, tokenizer, prompt_ids, h: int, *, exclude_prompt_windows: bool = True,
                      **sampling) -> tuple[Tuples, list[list[int]]]:
    """Sample the suspect on the prompts (`sample_completions`) and take the tuples of its
    completions. Returns the tuples and the completions. The test stays exact: the suspect's
    choices never depend on the key."""
    completions = sample_completions(model, tokenizer, prompt_ids, **sampling)
    return window_tuples(completions, prompt_ids, h, exclude_prompt_windows=exclude_prompt_windows), completions


def retokenized(completions, suspect_tokenizer, tokenizer) -> list[list[int]]:
    """A suspect's completions (its own token ids) as text, encoded by `tokenizer` (the auditor's):
    how a student with another vocabulary is audited. A deterministic function of the text, so
    the test stays exact."""
    texts = suspect_tokenizer.batch_decode(completions, skip_special_tokens=True)
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []


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
          points: int = 50, mode: str = "reading", reading_rule: str = "auto") -> AuditResult:
    """Exact pooled test of the tuples: exclusions, then first occurrence of each PRF input, then
    at most `max_tuples` in order; with the running log10 p against tuples scored.

    `reading_rule` (reading-mode tuples only): "auto" (the default) is "fresh-window" (exact) for
    h >= 1, and for h = 0 "unseen-tuple" where the detector's scheme has `monotone_selection`
    (valid, conservative; see the module docstring). "own-tuples" (drop predictions equal to any
    of the text's own tuples, future ones included) over-corrects, its p-values far from uniform
    (too large), and "none" (score every prediction) is not valid under H0: they exist only so
    the null benchmark can show why."""
    if reading_rule not in READING_RULES:
        raise ValueError(f"reading_rule must be one of {READING_RULES}, got {reading_rule!r}")
    if reading_rule == "auto":
        reading_rule = "unseen-tuple" if detector.h == 0 and detector.monotone_selection else "fresh-window"
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
    if t.text_tokens is not None and n and reading_rule in ("unseen-tuple", "own-tuples"):
        own = (t.seq_index << 32) | _prf(detector, t.contexts.reshape(n, h), t.text_tokens).astype(np.int64)
        pred = (t.seq_index << 32) | ident
        if reading_rule == "own-tuples":
            mask &= ~np.isin(pred, own)
        else:
            # Rows are in text order, so "written earlier" is: the tuple's first own-occurrence
            # row in this text comes before this row (the text's token at this row is not yet
            # in the prefix the suspect read).
            first_row = pd.Series(np.arange(n)).groupby(own).min()
            written_at = first_row.reindex(pred).to_numpy(dtype=float, na_value=np.inf)
            mask &= ~(written_at < np.arange(n))
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
