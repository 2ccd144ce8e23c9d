"""Detection shared by every token-hash scheme: selection, dedup, exact tails, the `Detection` record.

A scheme scores (context window, token) tuples. Under H0 (text written without the key) each
*distinct* PRF input gives one independent draw with a known law, so the detector

1. cuts the texts into windows (`windows.py`: vectorised over positions, ragged over sequences),
2. maps each to its 32-bit PRF input (`prf_inputs`, scheme-specific),
3. keeps the first occurrence of each PRF input (dedup; repeated text would otherwise look
   watermarked) and optionally drops windows that also occur in the prompts,
4. scores what is left (`tuple_scores`) and takes the exact upper tail of the sum (`log_sf`).

Per-text verdicts (`detect_each`) are a function of the text, and of reference texts the caller
passes explicitly, never of the other texts of the call: text i is scored on its own distinct
tuples (dedup within the text, its own prompt's windows optionally excluded, a key-free `keep`
mask) minus every tuple that occurs in `reference` (unprotected text the caller holds). Which
tuples are scored depends on the text and the reference only, both fixed before the key is drawn,
so over the randomness of the key the scored draws are independent with the scheme's null law and
the tail is exact: text written without the key is flagged with probability at most alpha, alone
or in any batch, and the same text gets the same p-value, bit for bit, alone and in any batch
(its tuples are scored and summed in its own text order whatever surrounds it).

One key, many texts. An auditor holds one key, and texts of one template share tuples: a shared
tuple is one draw that every text containing it scores, so with a fixed key a few shared tuples
with extreme values can lift a whole family at once (measured: with every tuple scored and no
reference, the worst of 30 keys flagged 1.5% of raw demo traces at alpha = 1e-3,
results/bench/templated.md). Two tools address that without making a p-value depend on the batch:

- `reference`: unprotected texts of the same kind (the template's skeleton occurs in them) remove
  the template's tuples from every text; what is left is each text's own. Required for templated
  corpora (README, "What a per-text p-value promises").
- `family` (the family guard) reads only the texts of the call and changes no p-value: per text, how
  many of its scored tuples at least `m` other inputs also score; a batch-level warning when the
  batch looks templated; and one pooled verdict over the distinct recurring tuples (each once,
  so exact): is the family's shared material itself watermarked?

Pooled verdicts (`detect`) are one test and score every distinct tuple of all texts once.

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

from .errors import UserError
from .hashing import KeyedHash
from .stats import LN10, lattice_log_sf, weighted_log_sf_bound
from .windows import Windows, as_sequences, extract_windows, first_occurrence

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
    n_reference: int = 0  # distinct tuples left out because a reference text contains them
    tail: str = "exact"  # "exact", or "chernoff-bound" for some weighted scores (p never understated)

    def as_dict(self) -> dict:
        return asdict(self)

    def significant(self, alpha: float) -> bool:
        return self.log10_p < math.log10(alpha)


FAMILY_SHARE = 0.05  # default m of the family guard: a tuple recurs when 5% of the other inputs score it
TEMPLATED_SHARE = 0.25  # a batch looks templated when the median text has this share of recurring tuples
# (chosen after looking: median shares 0.12-0.18 on SmolLM2 answers and ~0 on random-model text,
# 0.33 on the one-key test's synthetic templates and above on demo traces)


@dataclass(frozen=True)
class Family:
    """The family guard's report on one call (`TokenHashDetector.family`). Batch-level by design:
    it describes the texts together and changes none of their per-text verdicts."""

    m: int  # a scored tuple recurs when at least m other inputs also score it
    scored: np.ndarray  # per text: distinct tuples scored (as in its per-text verdict)
    recurring: np.ndarray  # per text: how many of those recur
    n_recurring_tuples: int  # distinct recurring tuples in the call
    pooled: Detection  # one verdict over the distinct recurring tuples, each once (exact)
    reference: bool  # whether reference texts were given

    @property
    def share(self) -> np.ndarray:
        """Per text: the share of its scored tuples that recur (0 for a text with none)."""
        return self.recurring / np.maximum(self.scored, 1)

    @property
    def templated(self) -> bool:
        return bool(len(self.scored) > 1 and np.median(self.share) >= TEMPLATED_SHARE)

    def warning(self) -> str | None:
        """One line when the batch looks templated, saying what to do; None otherwise."""
        if not self.templated:
            return None
        fix = ("the reference texts do not cover what these texts share; give more unprotected text of the same kind"
               if self.reference else
               "pass unprotected texts of the same kind as reference (--reference-texts, reference=) so each "
               "text is judged on what is its own, or read the pooled family verdict")
        return (f"the inputs look templated: the median input has {np.median(self.share):.0%} of its scored tuples "
                f"recurring in >= {self.m} other inputs; under one key such texts' per-text verdicts move together "
                f"(each p-value is still exact); {fix}")

    def describe(self) -> str:
        return (f"family guard: {self.n_recurring_tuples} distinct tuples recur in >= {self.m} other inputs "
                f"(median share per input {np.median(self.share) if len(self.share) else 0:.0%}); pooled over them: "
                f"log10_p={self.pooled.log10_p:.2f} over {self.pooled.n_scored} tuples")


@dataclass(frozen=True)
class Selection:
    """Which windows of one call a detector scores (`TokenHashDetector.select`), and the weight of each.

    It owns the outcome of the selection steps of the module docstring: every completion window
    (`windows`, text order) with its PRF input, the windows that survive the scheme's `unscored`
    rule, prompt exclusion, the caller's `keep` mask and the reference (`kept`), the first
    occurrence of each identity among them (`scored`: one draw each, text order), and the windows
    left out because a reference text contains them (`referenced`). `ident` is the PRF input,
    tagged with the text's index when dedup ran per text. Every part reads the texts (and the
    reference) only, never the key's scores, which is what keeps each scored draw's null law.
    """

    windows: Windows
    inputs: np.ndarray  # uint32 [N]: PRF input of every completion window
    ident: np.ndarray  # [N]: what dedup compares (the input, or (text << 32) | input per text)
    kept: np.ndarray  # bool [N]: survives unscored / prompt / keep / reference, before dedup
    scored: np.ndarray  # int64: indices of the windows scored, text order
    referenced: np.ndarray  # int64: indices left out because a reference contains them (once per identity with dedup)
    dedup: bool

    @property
    def draws(self) -> np.ndarray:
        """PRF inputs of the scored windows."""
        return self.inputs[self.scored]

    @property
    def owner(self) -> np.ndarray:
        """The text each scored window comes from."""
        return self.windows.seq_index[self.scored]

    def repeats(self) -> np.ndarray:
        """Per scored draw: how many kept windows share its identity (1 without dedup)."""
        if not self.dedup:
            return np.ones(len(self.scored))
        kept = self.ident[np.flatnonzero(self.kept)]
        return pd.Series(kept, copy=False).value_counts().reindex(self.ident[self.scored]).to_numpy(dtype=float)

    def weights(self, weights=None, count_repeats: bool = False) -> np.ndarray | None:
        """Per scored draw: the caller's window `weights` (one per completion window) times, with
        `count_repeats` (and dedup), how many kept windows use the draw; None when neither applies
        (a plain sum). Both are functions of the text, never of the key."""
        counts = self.repeats() if count_repeats and self.dedup else None
        if weights is None and counts is None:
            return None
        w = np.ones(len(self.scored))
        if weights is not None:
            w = np.asarray(weights, dtype=float)
            if w.shape != self.inputs.shape:
                raise UserError(f"weights have {w.size} entries for {len(self.inputs)} completion windows")
            w = w[self.scored]
        return w * counts if counts is not None else w


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

    def unscored(self, windows: Windows) -> np.ndarray | None:
        """Completion windows the scheme's sampler leaves unwatermarked (e.g. SynthID's repeated
        contexts), as a bool mask, or None. Must read only the text's own ids (key-free, its prefix
        only) so that the kept tuples keep their null law and a text's verdict its batch invariance."""
        return None

    def log_mgf(self, theta: np.ndarray) -> np.ndarray:
        """ln E[exp(theta * score)] of one tuple under H0 (for weighted tails); attribute
        `theta_max` where it is finite only below a bound."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------
    def _inputs(self, w: Windows) -> np.ndarray:
        return self.prf_inputs(w.contexts, w.tokens)

    def select(self, sequences, prompts=None, *, dedup: bool = True, exclude_prompt_windows: bool = False,
               per_sequence: bool = False, keep: np.ndarray | None = None, reference=None,
               reference_prompts=None) -> "Selection":
        """What this scheme scores of the texts (see `Selection`).

        `keep` (bool per completion window, e.g. `entropy.choice_points`) must be key-free and read
        only the prefix; dedup then runs among the kept windows. `reference` (token-id sequences of
        unprotected text, with optional `reference_prompts` for the contexts of their first
        tokens) removes every tuple it contains. `per_sequence`: dedup and prompt exclusion run
        within each text, so what a text scores never depends on the other texts.
        """
        completion, prompt = extract_windows(sequences, prompts, self.h)
        inputs = self._inputs(completion)
        # Per-sequence identity: tag each 32-bit input with its sequence index (fits in int64).
        ident = (completion.seq_index << 32) | inputs.astype(np.int64) if per_sequence else inputs
        skip = self.unscored(completion)
        mask = np.ones(len(inputs), dtype=bool) if skip is None else ~skip
        if exclude_prompt_windows and len(prompt.tokens):
            prompt_inputs = self._inputs(prompt)
            prompt_ident = (prompt.seq_index << 32) | prompt_inputs.astype(np.int64) if per_sequence else prompt_inputs
            mask &= ~np.isin(ident, prompt_ident)  # every occurrence of an excluded tuple goes
        if keep is not None:
            keep = np.asarray(keep, dtype=bool)
            if keep.shape != mask.shape:
                raise UserError(f"keep mask has {keep.size} entries for {mask.size} completion windows")
            mask &= keep
        dropped = np.zeros(0, dtype=np.int64)
        if reference is not None:
            in_ref = mask & np.isin(inputs, self.reference_inputs(reference, reference_prompts))
            dropped, mask = np.flatnonzero(in_ref), mask & ~in_ref
            if dedup:  # count each (text, tuple) once
                dropped = dropped[first_occurrence(ident[dropped])]
        sel = np.flatnonzero(mask)
        if dedup:
            sel = sel[first_occurrence(ident[sel])]
        else:
            warnings.warn(DEDUP_OFF_WARNING, stacklevel=3)
        return Selection(windows=completion, inputs=inputs, ident=ident, kept=mask, scored=sel, referenced=dropped,
                         dedup=dedup)

    def reference_inputs(self, reference, reference_prompts=None) -> np.ndarray:
        """Distinct PRF inputs of every window of the reference texts (contexts reaching into
        `reference_prompts` when given). Judged on the PRF input, the draw itself, as dedup is."""
        if reference_prompts is not None and len(as_sequences(reference_prompts)) != len(as_sequences(reference)):
            raise UserError(f"{len(as_sequences(reference_prompts))} reference prompts for "
                            f"{len(as_sequences(reference))} reference texts; give one prompt per text or none")
        if not len(as_sequences(reference)):
            return np.zeros(0, dtype=np.int64)
        ref, _ = extract_windows(reference, reference_prompts, self.h)
        return np.unique(self._inputs(ref).astype(np.int64))

    def scored_tuples(self, sequences, prompts=None, *, dedup: bool = True, exclude_prompt_windows: bool = False,
                      per_sequence: bool = False, keep: np.ndarray | None = None, reference=None,
                      reference_prompts=None) -> tuple[np.ndarray, np.ndarray, Windows]:
        """Per-tuple scores in text order after dedup/exclusion, the sequence each came from, and
        all windows before filtering.

        Pooled (default): dedup and prompt exclusion run across all texts. `per_sequence`: each
        text is deduplicated on its own and only its own prompt's windows are excluded. Either way
        tuples that `reference` (token-id sequences of unprotected text) contains are skipped.
        """
        s = self.select(sequences, prompts, dedup=dedup, per_sequence=per_sequence,
                        exclude_prompt_windows=exclude_prompt_windows, keep=keep, reference=reference,
                        reference_prompts=reference_prompts)
        return self.tuple_scores(s.draws), s.owner, s.windows

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
                n_reference: int = 0) -> Detection:
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
                         n_reference=int(n_reference))

    def detect(self, sequences, prompts=None, *, dedup: bool = True, exclude_prompt_windows: bool = False,
               keep: np.ndarray | None = None, weights: np.ndarray | None = None,
               count_repeats: bool = False) -> Detection:
        """One pooled verdict over all sequences; dedup runs across all of them.

        `keep` / `weights` (one per completion window, key-free, prefix-only: see `entropy.py`)
        select and weight the windows. `count_repeats`: each distinct tuple is still one draw, but
        weighted by how many kept windows use it (a function of the text alone, so the weighted
        null law holds: Var = gamma(1-gamma) * sum of squared counts, not the binomial of repeats).
        Weighted verdicts: `weighted_verdict`."""
        s = self.select(sequences, prompts, dedup=dedup, keep=keep, exclude_prompt_windows=exclude_prompt_windows)
        return self._verdict(self.tuple_scores(s.draws), s.weights(weights, count_repeats),
                             n_tuples=len(s.windows.tokens), dedup=dedup)

    def detect_each(self, sequences, prompts=None, *, dedup: bool = True, exclude_prompt_windows: bool = False,
                    keep: np.ndarray | None = None, weights: np.ndarray | None = None,
                    count_repeats: bool = False, reference=None, reference_prompts=None) -> list[Detection]:
        """One verdict per sequence, a function of that sequence (and of `reference`) alone:
        scored on its own distinct tuples minus those `reference` contains (see the module
        docstring). Vectorised across sequences; the same text gets the same verdict, bit for bit,
        alone and in any batch. `family` reports what the texts of a batch share."""
        n_seq = len(as_sequences(sequences))
        s = self.select(sequences, prompts, dedup=dedup, per_sequence=True, keep=keep,
                        exclude_prompt_windows=exclude_prompt_windows, reference=reference,
                        reference_prompts=reference_prompts)
        scores, w = self.tuple_scores(s.draws), s.weights(weights, count_repeats)
        seen = np.bincount(s.windows.seq_index, minlength=n_seq)
        n_ref = np.bincount(s.windows.seq_index[s.referenced], minlength=n_seq)
        bounds = np.searchsorted(s.owner, np.arange(n_seq + 1))  # scored tuples are in text order
        # Each text's slice is copied and summed on its own, left to right, so its verdict cannot
        # depend on what surrounds the text (a batched reduction may group the terms differently).
        return [self._verdict(scores[a:b].copy(), None if w is None else w[a:b].copy(), n_tuples=int(seen[i]),
                              dedup=dedup, n_reference=int(n_ref[i]), exact_sum=True)
                for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]

    def _verdict(self, scores: np.ndarray, weights: np.ndarray | None, *, n_tuples: int, dedup: bool,
                 n_reference: int = 0, exact_sum: bool = False) -> Detection:
        """The verdict on the scores of selected tuples: `weighted_verdict` when the selection
        carries weights, else the plain sum (`exact_sum`: math.fsum, the same bits in any batch)."""
        if weights is not None:
            return self.weighted_verdict(scores, weights, n_tuples=n_tuples, dedup=dedup, n_reference=n_reference)
        total = math.fsum(scores) if exact_sum else float(scores.sum())
        return self.verdict(total, len(scores), n_tuples=n_tuples, dedup=dedup, n_reference=n_reference)

    def family(self, sequences, prompts=None, *, m: int | None = None, dedup: bool = True,
               exclude_prompt_windows: bool = False, keep: np.ndarray | None = None, reference=None,
               reference_prompts=None) -> "Family":
        """The family guard: what the texts of one call share, reported beside (never inside)
        their per-text verdicts.

        A scored tuple *recurs* when at least `m` other inputs also score it (default: 5% of the
        other inputs, at least 1). Per text: its scored tuples and how many of them recur. For the
        batch: whether it looks templated (the median text has at least `TEMPLATED_SHARE` of its
        scored tuples recurring) and one pooled verdict over the distinct recurring tuples, each
        scored once (exact, like `detect`): evidence that the shared material itself carries the
        watermark. Reads the texts and the reference only; no p-value of `detect_each` changes.
        """
        n_seq = len(as_sequences(sequences))
        if m is None:
            m = max(1, math.ceil(FAMILY_SHARE * (n_seq - 1)))
        if not (isinstance(m, (int, np.integer)) and m >= 1):
            raise UserError(f"m (other inputs a recurring tuple is scored in) must be a positive integer, got {m!r}")
        s = self.select(sequences, prompts, dedup=True, per_sequence=True, keep=keep,
                        exclude_prompt_windows=exclude_prompt_windows, reference=reference,
                        reference_prompts=reference_prompts)
        owner, draws = s.owner, s.draws.astype(np.int64)
        # per (text, draw) once: dedup within a text already holds, so count texts per draw
        values, n_texts = np.unique(draws, return_counts=True)
        recurring = values[n_texts >= m + 1]
        is_rec = np.isin(draws, recurring)
        pooled = self.verdict(float(self.tuple_scores(recurring.astype(np.uint32)).sum()), len(recurring),
                              n_tuples=int(len(s.windows.tokens)))
        return Family(m=int(m), scored=np.bincount(owner, minlength=n_seq),
                      recurring=np.bincount(owner[is_rec], minlength=n_seq), n_recurring_tuples=len(recurring),
                      pooled=pooled, reference=reference is not None and len(as_sequences(reference)) > 0)

    def weighted_verdict(self, scores: np.ndarray, weights: np.ndarray, *, n_tuples: int = 0,
                         dedup: bool = True, n_reference: int = 0) -> Detection:
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
                         n_tuples=int(n_tuples), dedup=dedup, n_reference=int(n_reference), tail=tail)

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

