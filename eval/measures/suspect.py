"""A suspect's audit tuples, collected one way for every caller (`antidistill audit`, the runner).

`TupleCollection` says how: reading mode (teacher-force our protected texts; the suspect's top-1
or contrast choice) or generation mode (the suspect answers prompts), the choice-point filter
against our unprotected reference, the filter phi (frequent k-grams of our corpus), how many texts.
`suspect_tuples` does it and returns the tuples with the mask of positions to score;
`score_keys` tests them with the key and with public wrong keys (null controls). The statistics
(which rules keep a test exact) are `audit.py`'s; this module only puts its steps in order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from antidistill.students.batching import encode_prompts
from antidistill.watermark.errors import UserError

from .audit import (MODES, AuditResult, Tuples, frequent_kgrams, phi_mask, reading_tuples,
                    reference_top1, retokenized, sample_completions, score, window_tuples, wrong_keys)

SELECTIONS = ("top1", "contrast")


@dataclass(frozen=True)
class TupleCollection:
    """How a suspect's audit tuples are collected: everything but the models and the texts.

    `mode` "reading" teacher-forces the protected texts and takes the suspect's `selection` ("top1",
    or "contrast": the token it prefers most over the reference); "generation" samples the suspect
    on prompts at `temperature` (0: greedy) for at most `max_new_tokens`, with `seed` (the first
    batch's sampling seed; reading mode draws nothing). `max_reference_prob` (the choice-point
    filter) keeps only positions where the reference's top-1 probability is below it (None: every
    position). `filter_top` keeps only tuples among that many most frequent (h+1)-grams of the
    protected corpus (filter phi). `max_texts` uses the first that many texts or prompts. Every
    field is fixed before the key is used, so none can make a clean suspect look radioactive.
    """

    mode: str = "reading"
    selection: str = "top1"  # reading mode only
    max_reference_prob: float | None = None
    temperature: float = 1.0  # generation mode only
    max_new_tokens: int = 128  # generation mode only
    seed: int = 0  # generation mode only
    max_texts: int | None = None
    filter_top: int | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise UserError(f"audit mode must be one of {MODES}, got {self.mode!r}")
        if self.selection not in SELECTIONS:
            raise UserError(f"audit selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.max_reference_prob is not None and not 0 < self.max_reference_prob <= 1:
            raise UserError(f"max_reference_prob must lie in (0, 1], got {self.max_reference_prob!r}")
        if not self.temperature >= 0:
            raise UserError(f"temperature must be >= 0, got {self.temperature!r}")
        for name in ("max_new_tokens", "max_texts", "filter_top"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, np.integer)) and v >= 1):
                raise UserError(f"{name} must be a positive integer, got {v!r}")

    @property
    def needs_reference(self) -> bool:
        """Whether collecting needs the auditor's unprotected reference model."""
        return self.max_reference_prob is not None or (self.mode == "reading" and self.selection == "contrast")


def suspect_tuples(model, tokenizer, h: int, how: TupleCollection, *, records=None, prompt_ids=None, reference=None,
                   decode_settings: dict | None = None, ours=None) -> tuple[Tuples, np.ndarray | None]:
    """The suspect's audit tuples and the mask of those to score (None: all of them).

    `records`: our protected corpus (dicts with prompt_ids and completion_ids): the texts read in
    reading mode, the prompts answered in generation mode unless `prompt_ids` are given, and the
    source of filter phi's k-grams (all records, whatever `max_texts`). `reference`: our unprotected
    teacher (a model), required by `how.needs_reference`. `decode_settings` (temperature, top_p,
    processor: an attack's own way of decoding, `students.attacks.decoding_settings`) override the
    audit's temperature in generation mode. The mask is filter phi and then the choice-point filter.
    `ours`: our tokenizer, when the suspect's is another: it is then asked our prompt texts in its own
    tokens and its completions are read back in ours (generation mode only: its next-token choices
    in reading mode are over another vocabulary).
    """
    if how.needs_reference and reference is None:
        raise UserError("this audit needs the reference model (our unprotected teacher): contrast selection and "
                        "the choice-point filter compare against it")
    if records is None and (how.mode == "reading" or how.filter_top or prompt_ids is None or ours is not None):
        raise UserError("the audit needs our protected texts (records) for reading mode, filter phi, a suspect with "
                        "another tokenizer, or as generation mode's prompts when none are given")
    if ours is not None and how.mode == "reading":
        raise UserError("a suspect with another tokenizer can be audited in generation mode only: in reading mode "
                        "its next-token choices are over another vocabulary")
    if how.mode == "reading":
        texts = records[:how.max_texts] if how.max_texts else records
        pairs = [(r["prompt_ids"], r["completion_ids"]) for r in texts]
        tuples = reading_tuples(model, pairs, h, reference=reference if how.selection == "contrast" else None)
    else:
        prompts = list(prompt_ids) if prompt_ids is not None and ours is None else [r["prompt_ids"] for r in records]
        if how.max_texts:
            prompts = prompts[:how.max_texts]
        settings = {"temperature": how.temperature, **(decode_settings or {})}
        # the suspect is asked in its own tokens; what it writes is scored in ours
        theirs = prompts if ours is None else encode_prompts(tokenizer, [r["prompt"] for r in records[:len(prompts)]])
        comps = sample_completions(model, tokenizer, theirs, max_new_tokens=how.max_new_tokens, seed=how.seed,
                                   **settings)
        if ours is not None:
            comps = retokenized(comps, tokenizer, ours)
        tuples = window_tuples(comps, prompts, h)
        pairs = list(zip(prompts, comps))
    keep = None
    if how.filter_top:
        grams = frequent_kgrams([r["completion_ids"] for r in records], [r["prompt_ids"] for r in records], h,
                                how.filter_top)
        keep = phi_mask(tuples, grams)
    if how.max_reference_prob is not None:
        choice = reference_top1(reference, pairs, h) < how.max_reference_prob
        keep = choice if keep is None else keep & choice
    return tuples, keep


def score_keys(protection, key, tuples: Tuples, *, keep=None, n_wrong: int = 0, mode: str = "reading",
               dedup: bool = True, max_tuples: int | None = None) -> list[AuditResult]:
    """The exact audit test of the tuples (`audit.score`) with `key`, then with `n_wrong` public
    wrong keys (`audit.wrong_keys`, null controls whose p-values must behave as uniform): one
    result each, the key's first."""
    keys = [key, *wrong_keys(n_wrong)]
    return [score(protection.detector(k), tuples, dedup=dedup, max_tuples=max_tuples, keep=keep, mode=mode)
            for k in keys]
