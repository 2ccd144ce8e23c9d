"""Detection shared by every token-hash scheme: windows, dedup, exact tails, the `Detection` record.

A scheme scores (context window, token) tuples. Under H0 (text written without the key) each
*distinct* PRF input gives one independent draw with a known law, so the detector

1. cuts the texts into windows (vectorised over positions, ragged over sequences),
2. maps each to its 32-bit PRF input (`prf_inputs`, scheme-specific),
3. keeps the first occurrence of each PRF input (dedup; repeated text would otherwise look
   watermarked) and optionally drops windows that also occur in the prompts,
4. scores what is left (`tuple_scores`) and takes the exact upper tail of the sum (`log_sf`).

Per-text verdicts under one key (`detect_each`). Each p-value is exact over the randomness of the
key, but an auditor holds one key and tests many texts. Texts of one template share tuples, and a
shared tuple is one draw that every text containing it scores: with a fixed key, a few shared tuples
with extreme values lift a whole family of texts at once (measured: one wrong key flagged 7% of raw
demo traces at alpha = 1e-3). So by default (`shared="drop"`) a per-text verdict scores only tuples
that no other text of the batch (and no text of an optional unprotected `reference` corpus)
contains. The rule reads the texts, never the key, so each p-value stays exact; and no two texts
then score the same draw, so under a random key their verdicts are independent and the number of
false positives one key produces among N texts is Binomial(N, <= alpha) rather than clustered.
The price is power on templated text, where most tuples are shared (results/bench/templated.md).
Pooled verdicts (`detect`) are one test and score every distinct tuple once, as before.

Dedup on the PRF input rather than on the raw tuple is at least as strict: two tuples that hash to
the same input would give the same draw, so they count once (a rare 2**-32 event for distinct
windows, and for self-hash the whole point: windows sharing their min-hash anchor share a draw).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from .errors import UserError
from .hashing import KeyedHash
from .stats import LN10, lattice_log_sf, weighted_log_sf_bound

SHARED_KEEP_WARNING = ("shared='keep': tuples that several texts contain are scored in each of them, so "
                       "under one key the per-text verdicts of templated texts are correlated and false "
                       "positives can cluster far above alpha (each p-value is still exact over keys)")
DEDUP_OFF_WARNING = ("dedup=False: repeated (window, token) tuples are scored again, so repetitive "
                     "unwatermarked text can look watermarked; p-values are not valid")


@dataclass(frozen=True)
class Detection:
    """One detection verdict. Higher `statistic` (and `z`) always means more watermarked."""

    n_scored: int  # distinct tuples scored
    statistic: float  # green count / score sum / count of g-values equal to 1
    z: float
    log10_p: float  # exact, finite far below 1e-300
    p_value: float  # 10**log10_p (underflows to 0.0 below ~1e-308; log10_p stays exact)
    scheme: str
    key_fingerprint: str
    n_tuples: int = 0  # windows seen before dedup and prompt exclusion
    dedup: bool = True
    n_shared: int = 0  # per-text verdicts: distinct tuples left out because other texts share them
    tail: str = "exact"  # "exact", or "chernoff-bound" for some weighted scores (p never understated)

    def as_dict(self) -> dict:
        return asdict(self)

    def significant(self, alpha: float) -> bool:
        return self.log10_p < math.log10(alpha)


@dataclass(frozen=True)
class Windows:
    """(context window, token) tuples in text order, with the sequence each came from."""

    contexts: np.ndarray  # int64 [N, h]
    tokens: np.ndarray  # int64 [N]
    seq_index: np.ndarray  # int64 [N]


def as_sequences(sequences) -> list[np.ndarray]:
    """Accept one sequence or many (lists, numpy arrays, tensors); return int64 arrays."""
    if isinstance(sequences, torch.Tensor):
        sequences = sequences.detach().cpu().numpy()
    if isinstance(sequences, np.ndarray):
        if sequences.ndim == 1:
            sequences = [sequences]
        elif sequences.ndim != 2:
            raise UserError(f"token ids must be 1-D or 2-D, got shape {sequences.shape}")
    sequences = list(sequences)
    if sequences and np.ndim(sequences[0]) == 0:  # a single flat sequence of ints
        sequences = [sequences]
    out = []
    for i, seq in enumerate(sequences):
        if isinstance(seq, torch.Tensor):
            seq = seq.detach().cpu().numpy()
        arr = np.asarray(seq)
        if arr.size == 0:
            out.append(np.zeros(0, dtype=np.int64))
            continue
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise UserError(f"sequence {i}: token ids must be a flat list of integers")
        if arr.min() < 0 or arr.max() >= 2**32:
            raise UserError(f"sequence {i}: token ids must lie in [0, 2**32)")
        out.append(arr.astype(np.int64, copy=False))
    return out


def _ragged_positions(starts: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All integers in [start_i, stop_i) for every i, concatenated, and the i each came from."""
    counts = np.maximum(stops - starts, 0)
    total = int(counts.sum())
    owner = np.repeat(np.arange(len(counts)), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + offsets, owner


def extract_windows(sequences, prompts=None, h: int = 1) -> tuple[Windows, Windows]:
    """Windows of the completions (scored) and of the prompts (for optional exclusion).

    The context of a completion's first tokens reaches back into its prompt; positions with fewer
    than h tokens before them have no full window and are not scored.
    """
    seqs = as_sequences(sequences)
    if prompts is None:
        prm = [np.zeros(0, dtype=np.int64)] * len(seqs)
    else:
        prm = as_sequences(prompts)
        if len(prm) == 1 and len(seqs) > 1 and np.ndim(prompts[0]) == 0:
            prm = prm * len(seqs)
        if len(prm) != len(seqs):
            raise UserError(f"{len(prm)} prompts for {len(seqs)} sequences; give one prompt per sequence")
    full_len = np.array([len(p) + len(s) for p, s in zip(prm, seqs)], dtype=np.int64)
    prompt_len = np.array([len(p) for p in prm], dtype=np.int64)
    flat = np.concatenate([np.concatenate([p, s]) for p, s in zip(prm, seqs)]) if seqs else np.zeros(0, np.int64)
    base = np.cumsum(full_len) - full_len

    def windows(lo, hi) -> Windows:
        pos, owner = _ragged_positions(base + lo, base + hi)
        ctx = flat[pos[:, None] + np.arange(-h, 0)] if h else np.zeros((len(pos), 0), np.int64)
        return Windows(ctx, flat[pos], owner)

    completion = windows(np.maximum(prompt_len, h), full_len)
    prompt = windows(np.full_like(prompt_len, h), prompt_len)
    return completion, prompt


def first_occurrence(keys: np.ndarray) -> np.ndarray:
    """Boolean mask keeping the first occurrence of each value (hash-based, order preserving)."""
    return ~pd.Series(keys, copy=False).duplicated(keep="first").to_numpy()


class TokenHashDetector:
    """Base detector for schemes that score (window, token) tuples through the keyed hash.

    Subclasses define `tuple_scores` (the per-tuple score from the PRF input), `log_sf` (ln of the
    exact H0 upper tail of the score sum) and `null_mean_var` (per-tuple mean/variance under H0,
    for z); schemes whose PRF input is not the plain keyed hash override `prf_inputs`.

    `monotone_selection`: True when the chance that the sampler writes token w is non-increasing
    in the score of every *other* candidate's tuple (KGW: a bias on the other token only grows the
    normaliser; Gumbel: a larger u for another token can only make it win instead). Then text that
    chose w after a window is evidence *against* the other candidates there, which is what lets a
    radioactivity audit score predictions the text never wrote (see `eval/measures/audit.py`).
    """

    monotone_selection = False

    def __init__(self, protection, key):
        self.protection = protection
        self.scheme = protection.spec
        self.key_fingerprint = key.fingerprint
        self.h = protection.context_width
        self.hash = KeyedHash(key, protection.hash_label)

    # -- scheme-specific -------------------------------------------------------------------
    def prf_inputs(self, contexts, tokens) -> np.ndarray:
        """uint32 PRF input of each (context [N, h], token [N]) tuple."""
        return self.hash.prf_input(contexts, tokens)

    def tuple_scores(self, prf_inputs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def log_sf(self, statistic: float, n: int) -> float:
        raise NotImplementedError

    def null_mean_var(self) -> tuple[float, float]:
        raise NotImplementedError

    def score_binomial(self) -> tuple[int, float] | None:
        """(trials, q) when a tuple's score is Binomial(trials, q) under H0 (exact weighted tails)."""
        return None

    def log_mgf(self, theta: np.ndarray) -> np.ndarray:
        """ln E[exp(theta * score)] of one tuple under H0 (for weighted tails); attribute
        `theta_max` where it is finite only below a bound."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------
    def _inputs(self, w: Windows) -> np.ndarray:
        return self.prf_inputs(w.contexts, w.tokens)

    def _selected(self, sequences, prompts=None, *, dedup: bool = True, exclude_prompt_windows: bool = False,
                  per_sequence: bool = False, keep: np.ndarray | None = None, shared: str = "keep",
                  reference=None, count_repeats: bool = False):
        """PRF inputs of all completion windows, the indices (text order) that are scored, the
        indices left out because another text shares them, the windows, and (with `count_repeats`)
        how many kept windows share each scored PRF input.

        `keep` (bool per completion window, e.g. `entropy.choice_points`) must be key-free and read
        only the prefix; dedup then runs among the kept windows. `shared="drop"` (per-sequence
        only) leaves out tuples that another text's scored tuples, or any `reference` text, contain.
        """
        if shared not in ("drop", "keep"):
            raise UserError(f"shared must be 'drop' or 'keep', got {shared!r}")
        if shared == "keep" and reference is not None:  # reference texts only name tuples to drop
            raise UserError("reference texts only apply when shared tuples are dropped; give one or the other "
                            "(--reference-texts or --keep-shared-tuples)")
        completion, prompt = extract_windows(sequences, prompts, self.h)
        inputs = self._inputs(completion)
        # Per-sequence identity: tag each 32-bit input with its sequence index (fits in int64).
        ident = (completion.seq_index << 32) | inputs.astype(np.int64) if per_sequence else inputs
        mask = np.ones(len(inputs), dtype=bool)
        if exclude_prompt_windows and len(prompt.tokens):
            prompt_inputs = self._inputs(prompt)
            prompt_ident = (prompt.seq_index << 32) | prompt_inputs.astype(np.int64) if per_sequence else prompt_inputs
            mask &= ~np.isin(ident, prompt_ident)  # every occurrence of an excluded tuple goes
        if keep is not None:
            keep = np.asarray(keep, dtype=bool)
            if keep.shape != mask.shape:
                raise UserError(f"keep mask has {keep.size} entries for {mask.size} completion windows")
            mask &= keep
        sel = np.flatnonzero(mask)
        counts = None
        if dedup:
            kept = ident[sel]
            sel = sel[first_occurrence(kept)]
            if count_repeats:
                counts = pd.Series(kept, copy=False).value_counts().reindex(ident[sel]).to_numpy(dtype=float)
        else:
            warnings.warn(DEDUP_OFF_WARNING, stacklevel=3)
        dropped = np.zeros(0, dtype=np.int64)
        if per_sequence and shared == "drop":
            is_shared = np.isin(inputs[sel], self._shared_inputs(ident[sel], reference))
            dropped, sel = sel[is_shared], sel[~is_shared]
            if counts is not None:
                counts = counts[~is_shared]
        elif per_sequence:
            warnings.warn(SHARED_KEEP_WARNING, stacklevel=3)
        return inputs, sel, dropped, completion, counts

    def _shared_inputs(self, ident: np.ndarray, reference) -> np.ndarray:
        """PRF inputs that two or more texts score, or that any reference text contains.

        Sharing is judged on the PRF input, the draw itself, as dedup is: texts that share no
        input share no draw (self-hash windows with one anchor included).
        """
        per_text = np.unique(ident) & 0xFFFFFFFF  # each (text, input) once
        values, counts = np.unique(per_text, return_counts=True)
        common = values[counts >= 2]
        if reference is not None and len(as_sequences(reference)):
            ref, _ = extract_windows(reference, None, self.h)
            common = np.union1d(common, self._inputs(ref).astype(np.int64))
        return common

    def scored_tuples(self, sequences, prompts=None, *, dedup: bool = True, exclude_prompt_windows: bool = False,
                      per_sequence: bool = False, keep: np.ndarray | None = None, shared: str = "drop",
                      reference=None) -> tuple[np.ndarray, np.ndarray, Windows]:
        """Per-tuple scores in text order after dedup/exclusion, the sequence each came from, and
        all windows before filtering.

        Pooled (default): dedup and prompt exclusion run across all texts. `per_sequence`: each
        text is deduplicated on its own and only its own prompt's windows are excluded; with
        `shared="drop"` a text also skips tuples that another text of the batch, or any text of
        `reference` (token-id sequences of unprotected text), contains (see the module docstring).
        """
        inputs, sel, _, completion, _ = self._selected(sequences, prompts, dedup=dedup, per_sequence=per_sequence,
                                                       exclude_prompt_windows=exclude_prompt_windows, keep=keep,
                                                       shared=shared, reference=reference)
        return self.tuple_scores(inputs[sel]), completion.seq_index[sel], completion

    def score_windows(self, contexts, tokens, *, dedup: bool = True) -> Detection:
        """Detection over explicit (context [N, h], token [N]) tuples, e.g. a suspect's top-1
        predictions under teacher forcing (reading-mode audit)."""
        tokens = as_sequences(np.asarray(tokens).reshape(-1))[0]
        contexts = np.asarray(contexts, dtype=np.int64).reshape(len(tokens), self.h)
        inputs = self.prf_inputs(contexts, tokens)
        if dedup:
            inputs = inputs[first_occurrence(inputs)]
        else:
            warnings.warn(DEDUP_OFF_WARNING, stacklevel=2)
        scores = self.tuple_scores(inputs)
        return self.verdict(float(scores.sum()), len(scores), n_tuples=len(tokens), dedup=dedup)

    def verdict(self, statistic: float, n: int, *, n_tuples: int = 0, dedup: bool = True,
                n_shared: int = 0) -> Detection:
        if n == 0:
            ln_p, z = 0.0, 0.0
        else:
            mean, var = self.null_mean_var()
            z = (statistic - n * mean) / math.sqrt(n * var)
            ln_p = min(0.0, self.log_sf(statistic, n))
        log10_p = ln_p / LN10
        return Detection(n_scored=int(n), statistic=float(statistic), z=float(z), log10_p=float(log10_p),
                         p_value=float(10.0**log10_p), scheme=self.scheme,
                         key_fingerprint=self.key_fingerprint, n_tuples=int(n_tuples), dedup=dedup,
                         n_shared=int(n_shared))

    def detect(self, sequences, prompts=None, *, dedup: bool = True, exclude_prompt_windows: bool = False,
               keep: np.ndarray | None = None, weights: np.ndarray | None = None,
               count_repeats: bool = False) -> Detection:
        """One pooled verdict over all sequences; dedup runs across all of them.

        `keep` / `weights` (one per completion window, key-free, prefix-only: see `entropy.py`)
        select and weight the windows. `count_repeats`: each distinct tuple is still one draw, but
        weighted by how many kept windows use it (a function of the text alone, so the weighted
        null law holds: Var = gamma(1-gamma) * sum of squared counts, not the binomial of repeats).
        Weighted verdicts: `weighted_verdict`."""
        inputs, sel, _, windows, counts = self._selected(sequences, prompts, dedup=dedup, keep=keep,
                                                      exclude_prompt_windows=exclude_prompt_windows,
                                                      count_repeats=count_repeats)
        scores = self.tuple_scores(inputs[sel])
        if weights is not None or counts is not None:
            w = _take(weights, sel, len(inputs)) if weights is not None else np.ones(len(sel))
            w = w * counts if counts is not None else w
            return self.weighted_verdict(scores, w, n_tuples=len(windows.tokens), dedup=dedup)
        return self.verdict(float(scores.sum()), len(scores), n_tuples=len(windows.tokens), dedup=dedup)

    def detect_each(self, sequences, prompts=None, *, dedup: bool = True, exclude_prompt_windows: bool = False,
                    keep: np.ndarray | None = None, weights: np.ndarray | None = None,
                    count_repeats: bool = False, shared: str = "drop", reference=None) -> list[Detection]:
        """One verdict per sequence (each deduplicated on its own), vectorised across sequences.

        `shared="drop"` (default) scores only tuples no other text of the batch or of `reference`
        contains, so one key's false positives do not cluster on templated text; `"keep"` scores
        every distinct tuple of each text (warns).
        """
        n_seq = len(as_sequences(sequences))
        inputs, sel, dropped, windows, counts = self._selected(
            sequences, prompts, dedup=dedup, per_sequence=True, keep=keep,
            exclude_prompt_windows=exclude_prompt_windows, shared=shared, reference=reference,
            count_repeats=count_repeats)
        scores, owner = self.tuple_scores(inputs[sel]), windows.seq_index[sel]
        seen = np.bincount(windows.seq_index, minlength=n_seq)
        n_shared = np.bincount(windows.seq_index[dropped], minlength=n_seq)
        if weights is not None or counts is not None:
            w = _take(weights, sel, len(inputs)) if weights is not None else np.ones(len(sel))
            w = w * counts if counts is not None else w
            bounds = np.searchsorted(owner, np.arange(n_seq + 1))
            return [self.weighted_verdict(scores[a:b], w[a:b], n_tuples=int(seen[i]), dedup=dedup,
                                          n_shared=int(n_shared[i]))
                    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
        sums = np.bincount(owner, weights=scores, minlength=n_seq)
        counts = np.bincount(owner, minlength=n_seq)
        return [self.verdict(float(sums[i]), int(counts[i]), n_tuples=int(seen[i]), dedup=dedup,
                             n_shared=int(n_shared[i]))
                for i in range(n_seq)]

    def weighted_verdict(self, scores: np.ndarray, weights: np.ndarray, *, n_tuples: int = 0,
                         dedup: bool = True, n_shared: int = 0) -> Detection:
        """Verdict on sum_i w_i * score_i (w_i >= 0, fixed by the text, never by the key): the exact
        tail for integer weights on binomial scores (kgw, unigram, synthid: `stats.lattice_log_sf`),
        else a Chernoff bound (`stats.weighted_log_sf_bound`, conservative); z from the null mean
        and variance."""
        w = np.asarray(weights, dtype=float)
        if len(w) and not (np.all(np.isfinite(w)) and w.min() >= 0):
            raise UserError("weights must be finite and non-negative")
        statistic = float(np.dot(w, scores))
        mean, var = self.null_mean_var()
        spread = math.sqrt(var * float(np.dot(w, w)))
        z = (statistic - mean * w.sum()) / spread if spread > 0 else 0.0
        lattice = self.score_binomial() if spread > 0 else None
        exact = lattice_log_sf(statistic, w, *lattice) if lattice else None
        if spread == 0:
            ln_p, tail = 0.0, "exact"
        elif exact is not None:
            ln_p, tail = exact, "exact"
        else:
            ln_p, tail = weighted_log_sf_bound(statistic, w, self.log_mgf), "chernoff-bound"
        log10_p = ln_p / LN10
        return Detection(n_scored=int(np.count_nonzero(w)), statistic=statistic, z=float(z), log10_p=float(log10_p),
                         p_value=float(10.0**log10_p), scheme=self.scheme, key_fingerprint=self.key_fingerprint,
                         n_tuples=int(n_tuples), dedup=dedup, n_shared=int(n_shared), tail=tail)

    def curve(self, sequences, prompts=None, *, dedup: bool = True, exclude_prompt_windows: bool = False,
              points: int = 50) -> pd.DataFrame:
        """log10 p against the number of tuples scored (in text order), at ~`points` sizes."""
        scores, _, _ = self.scored_tuples(sequences, prompts, dedup=dedup,
                                          exclude_prompt_windows=exclude_prompt_windows)
        if len(scores) == 0:
            return pd.DataFrame({"n_scored": [], "log10_p": []})
        sizes = np.unique(np.geomspace(1, len(scores), num=points).round().astype(int))
        cum = np.cumsum(scores)
        rows = [(int(n), self.verdict(float(cum[n - 1]), int(n), dedup=dedup).log10_p) for n in sizes]
        return pd.DataFrame(rows, columns=["n_scored", "log10_p"])



def _take(weights, sel: np.ndarray, n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,):
        raise UserError(f"weights have {w.size} entries for {n} completion windows")
    return w[sel]
