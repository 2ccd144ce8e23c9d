"""Detectability of a protection on the teacher's own outputs, clean and under edit attacks.

Each text gets an exact p-value from its detector, a function of the text and of a reference of
unprotected text (per-text verdicts: see watermark/detection.py). A text is flagged when p < alpha,
so the false-positive rate is alpha by construction; the held-out unprotected outputs show it holds
empirically. The bench's corpora are templated task-suite traces, so, as the README asks for such
corpora, the unprotected outputs serve as the reference: protected texts are scored with all of
them as reference, and each half of them with the other half (cross-fitting; no text references
itself). Reported per protection and attack: TPR at alpha = 1e-2 and 1e-3,
empirical FPR, ROC AUC of -log10 p, and the median number of scored tuples a protected text needs
before its running p-value first drops below 1e-3 (inf when most never do; on the first 200 texts).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from antidistill.students.attacks import edit_sequences

from .stats import roc_auc, roc_curve, tpr_at_alpha

ALPHAS = (1e-2, 1e-3)
DEFAULT_ATTACKS = (("none", 0.0), ("substitute", 0.1), ("substitute", 0.3), ("substitute", 0.5),
                   ("delete", 0.1), ("delete", 0.3), ("insert", 0.1), ("insert", 0.3))


def text_verdicts(detector, sequences, prompts=None, reference=None) -> list:
    """Per-text verdicts. `reference`: (texts, prompts) of unprotected text held out from
    `sequences`, or "halves": each half of `sequences` is scored with the other half as reference
    (cross-fitting, for a set of unprotected texts that is its own reference), or None."""
    if reference is None:
        return detector.detect_each(sequences, prompts)
    if isinstance(reference, str):
        if reference != "halves":
            raise ValueError(f"reference must be (texts, prompts), 'halves' or None, got {reference!r}")
        half = len(sequences) // 2
        prm = list(prompts) if prompts is not None else [[] for _ in sequences]
        a, b = (list(sequences[:half]), prm[:half]), (list(sequences[half:]), prm[half:])
        return (detector.detect_each(*a, reference=b[0], reference_prompts=b[1])
                + detector.detect_each(*b, reference=a[0], reference_prompts=a[1]))
    return detector.detect_each(sequences, prompts, reference=reference[0], reference_prompts=reference[1])


def text_log10_p(detector, sequences, prompts=None, reference=None) -> np.ndarray:
    """Exact log10 p-value of each text on its own (dedup within the text; `reference` as in
    `text_verdicts`)."""
    return np.array([d.log10_p for d in text_verdicts(detector, sequences, prompts, reference)], dtype=float)


def tuples_to_significance(detector, sequences, prompts=None, alpha: float = 1e-3, reference=None) -> np.ndarray:
    """Per text: the number of scored tuples after which its running p first falls below alpha
    (inf if it never does). `reference`: (texts, prompts) of unprotected text, or None."""
    ref = {"reference": reference[0], "reference_prompts": reference[1]} if reference is not None else {}
    scores, owner, _ = detector.scored_tuples(sequences, prompts, per_sequence=True, **ref)
    cut = math.log(alpha)
    n_seq = len(sequences)
    out = np.full(n_seq, np.inf)
    if len(scores) == 0:
        return out
    starts = np.searchsorted(owner, np.arange(n_seq), side="left")
    stops = np.searchsorted(owner, np.arange(n_seq), side="right")
    for i in range(n_seq):
        s = np.cumsum(scores[starts[i]:stops[i]])
        for n in range(1, len(s) + 1):
            if detector.log_sf(float(s[n - 1]), n) < cut:
                out[i] = n
                break
    return out


def detectability(protected: dict[str, tuple], negatives, key, vocab_size: int, *,
                  attacks=DEFAULT_ATTACKS, alphas=ALPHAS, seed: int = 0,
                  roc: bool = True, reference: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Detection of each protection's texts against held-out unprotected texts.

    `protected` maps a protection (object with `.detector(key)`, or spec via parse_protection) to
    (sequences, prompts); `negatives` is (sequences, prompts) of unprotected text. Edit attacks hit
    both sides (same seed per side). With `reference` (default) the (attacked) negatives are the
    reference of unprotected text: all of them for the protected texts, the other half for each
    half of them. Returns (table, roc points of the unattacked case).
    """
    from antidistill.watermark import parse_protection

    rows, rocs = [], []
    neg_seqs, neg_prompts = negatives
    for spec, (seqs, prompts) in protected.items():
        prot = parse_protection(spec)
        det = prot.detector(key)
        for attack, rate in attacks:
            pos = edit_sequences(seqs, attack, rate, vocab_size, seed=seed)
            neg = edit_sequences(neg_seqs, attack, rate, vocab_size, seed=seed + 1)
            ref = (neg, neg_prompts) if reference else None
            lp_pos = text_log10_p(det, pos, prompts, ref)
            lp_neg = text_log10_p(det, neg, neg_prompts, "halves" if reference else None)
            row = {"protection": prot.spec, "attack": attack, "rate": rate, "n_pos": len(pos), "n_neg": len(neg)}
            for a in alphas:
                r = tpr_at_alpha(lp_pos, lp_neg, a)
                row[f"tpr@{a:g}"] = r["tpr"]
                row[f"fpr@{a:g}"] = r["fpr"]
            row["auc"] = roc_auc(-lp_pos, -lp_neg)
            row["median_log10_p"] = float(np.median(lp_pos)) if len(lp_pos) else float("nan")
            if attack == "none":
                k = min(len(pos), 200)  # a scalar tail per prefix: a subset keeps this cheap
                need = tuples_to_significance(det, pos[:k], prompts[:k] if prompts is not None else None, 1e-3,
                                              reference=ref)
                row["median_tuples_to_1e-3"] = float(np.median(need)) if len(need) else float("nan")
                if roc:
                    curve = roc_curve(-lp_pos, -lp_neg)
                    curve.insert(0, "protection", prot.spec)
                    rocs.append(curve)
            rows.append(row)
    roc_df = pd.concat(rocs, ignore_index=True) if rocs else pd.DataFrame(columns=["protection", "fpr", "tpr"])
    return pd.DataFrame(rows), roc_df


# ---------------------------------------------------------------- detection against length
def _per_text(values: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    return np.split(values, np.cumsum(lengths)[:-1]) if lengths else []


def _log10_ps_at(det, seqs, prompts, masks, n: int, filtered: bool, reference) -> np.ndarray:
    """log10 p of each text at least n tokens long, cut to its first n tokens; `reference`:
    (texts, prompts) of unprotected text whose tuples are not scored (see `text_verdicts`)."""
    idx = [i for i, s in enumerate(seqs) if len(s) >= n]
    kw = {"keep": np.concatenate([masks[i][:n] for i in idx])} if filtered and idx else {}
    return np.array([d.log10_p for d in det.detect_each([seqs[i][:n] for i in idx], [prompts[i] for i in idx],
                                                        reference=reference[0], reference_prompts=reference[1], **kw)])


def _halves(seqs, prompts, masks) -> list[tuple]:
    """The unprotected texts as two halves, each scored with the other (whole) as its reference."""
    h = len(seqs) // 2
    a, b = (list(seqs[:h]), list(prompts[:h]), masks[:h]), (list(seqs[h:]), list(prompts[h:]), masks[h:])
    return [(a, b[:2]), (b, a[:2])]


def length_table(reference_model, protected: dict[str, tuple], negatives: tuple, key, alpha: float, lengths,
                 rule) -> pd.DataFrame:
    """Single-text TPR at `alpha` of texts cut to their first n completion tokens (only texts at
    least n long), scoring every position and only those the `rule` (watermark.entropy.ChoiceRule)
    keeps under the unprotected `reference_model` (prefix only). `protected` maps a spec to
    (sequences, prompts), `negatives` is (sequences, prompts) of unprotected text: its flag rate under
    the same rule is the empirical FPR. As in `detectability`, the unprotected texts are the reference
    (their tuples are not scored: templated text shares them), each half of them scored with the other
    half. A SWEET text (kgw entropy=H) is scored where it was biased: reference entropy >= H."""
    from antidistill.watermark import parse_protection
    from antidistill.watermark.entropy import ChoiceRule, reference_uncertainty

    def uncertainty(seqs, prompts):  # one teacher-forced reading per corpus serves every rule
        top1, ent = reference_uncertainty(reference_model, seqs, prompts, 0, batch_size=8)
        return top1, ent, [len(s) for s in seqs]

    def masks(unc, rule_here):
        top1, ent, lens = unc
        return _per_text(rule_here.apply(top1, ent)[0], lens)

    neg_unc = uncertainty(*negatives)
    rows = []
    for spec, (seqs, prompts) in protected.items():
        prot = parse_protection(spec)
        det = prot.detector(key)
        sweet = getattr(prot, "entropy", 0.0)
        rule_here = ChoiceRule(min_entropy=sweet) if sweet else rule
        pos = (seqs, prompts, masks(uncertainty(seqs, prompts), rule_here))
        neg = _halves(*negatives, masks(neg_unc, rule_here))
        for n in lengths:
            for filtered in (False, True) if rule_here.filters else (False,):
                lp = {"pos": _log10_ps_at(det, *pos, n, filtered, negatives),
                      "neg": np.concatenate([_log10_ps_at(det, *half, n, filtered, ref) for half, ref in neg])}
                r = tpr_at_alpha(lp["pos"], lp["neg"], alpha)
                rows.append({"protection": prot.spec, "tokens": n, "rule": rule_here.describe() if filtered else "all",
                             "n_pos": len(lp["pos"]), "n_neg": len(lp["neg"]), f"tpr@{alpha:g}": r["tpr"],
                             f"fpr@{alpha:g}": r["fpr"],
                             "median_log10_p": float(np.median(lp["pos"])) if len(lp["pos"]) else math.nan})
    return pd.DataFrame(rows)
