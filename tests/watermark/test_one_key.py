"""Per-text verdicts: a function of the text (and explicit reference texts), calibrated under one key.

Each per-text p-value is exact over the randomness of the key, but an auditor holds one key. Texts
of one template share (window, token) tuples; scored in every text, a few shared draws with high
keyed values flag a whole family at once. The answer here reads no other input of the call:
unprotected reference texts of the same kind remove the template's tuples from every text, and the
family guard reports (never scores differently) what the inputs share.
"""
import random

import numpy as np
import pytest
from scipy import stats

from antidistill.watermark import Key, UserError, parse_protection

from .helpers import SPECS

ALPHA = 0.01
N_KEYS = 40
KGW = "kgw:gamma=0.25,delta=2,h=1,hash=left"


def templated_texts(n: int = 400, n_templates: int = 4, length: int = 40, fill_seed: int = 0) -> list[np.ndarray]:
    """Texts of a few templates: a fixed skeleton per template, three phrasings at every fourth
    position, a random number (one of 100 tokens) at every third: the shape of the demo's
    reasoning traces. The templates are the same for every `fill_seed`; the fills differ."""
    shape = np.random.default_rng(12345)
    skeletons = shape.integers(100, 1000, size=(n_templates, length))
    phrasings = shape.integers(100, 1000, size=(n_templates, length, 3))
    rng = np.random.default_rng(fill_seed)
    texts = []
    for i in range(n):
        t = i % n_templates
        text = skeletons[t].copy()
        slots = np.arange(0, length, 4)
        text[slots] = phrasings[t, slots, rng.integers(0, 3, size=len(slots))]
        text[np.arange(2, length, 3)] = rng.integers(0, 100, size=len(range(2, length, 3)))
        texts.append(text)
    return texts


def flags_per_key(spec: str, texts, reference=None) -> np.ndarray:
    protection = parse_protection(spec)
    counts = []
    for k in range(N_KEYS):
        det = protection.detector(Key(f"one-key test {k}".encode()))
        counts.append(sum(d.p_value <= ALPHA for d in det.detect_each(texts, reference=reference)))
    return np.array(counts)


def dispersion_p(counts: np.ndarray, n: int) -> float:
    """Upper-tail p of the binomial dispersion test: sum (c - mean)^2 / (mean (1 - mean/n)) is
    about chi2(K - 1) when every key's count is Binomial(n, a) for one a (conservative p-values
    lower a, which the test allows); clustering inflates it."""
    mean = counts.mean()
    if mean == 0:
        return 1.0
    stat = float(((counts - mean) ** 2).sum() / (mean * (1 - mean / n)))
    return float(stats.chi2.sf(stat, len(counts) - 1))


@pytest.fixture(scope="module")
def texts():
    return templated_texts()


@pytest.fixture(scope="module")
def reference():
    """Unprotected texts of the same templates, held out (other fills)."""
    return templated_texts(n=400, fill_seed=1)


@pytest.mark.parametrize("spec", SPECS)
def test_one_key_with_a_reference_does_not_cluster(spec, texts, reference):
    """Null calibration under one fixed key on many texts of a few templates, with the README's
    rule for templated corpora: a held-out reference of unprotected texts of the same kind."""
    counts = flags_per_key(spec, texts, reference)
    n = len(texts)
    if not spec.startswith("unigram"):  # unigram's tuples are single tokens: the reference holds them all
        assert counts.sum() > 0  # the texts keep enough of their own tuples to be tested at all
    lo, hi = stats.binom.interval(0.999, N_KEYS * n, ALPHA)
    assert counts.sum() <= hi, f"{counts.sum()} false positives over {N_KEYS} keys x {n} texts"
    assert dispersion_p(counts, n) > 1e-3, f"per-key counts overdispersed: {counts.tolist()}"
    # the worst key stays where Binomial(n, alpha) puts the maximum of N_KEYS draws
    assert counts.max() <= stats.binom.ppf(1 - 1e-3 / N_KEYS, n, ALPHA), counts.tolist()


def test_without_a_reference_one_key_clusters_and_the_guard_says_so(texts):
    """The failure the reference prevents, measured on the same texts: one key flags a family at
    once. The family guard, reading the inputs, calls the batch templated and warns."""
    counts = flags_per_key(KGW, texts)
    assert dispersion_p(counts, len(texts)) < 1e-6, counts.tolist()
    family = parse_protection(KGW).detector(Key(b"k")).family(texts)
    assert family.templated and "--reference-texts" in family.warning()
    assert np.median(family.share) >= 0.25


@pytest.mark.parametrize("spec", SPECS)
def test_same_text_same_verdict_in_any_batch(spec):
    """Bit-identical verdicts for a text alone, in batches of other texts, shuffled, duplicated,
    with prompts, reference texts, a keep mask and repeat counts."""
    rng = np.random.default_rng(0)
    det = parse_protection(spec).detector(Key(b"batch invariance"))
    pool = templated_texts(n=60, fill_seed=2) + [rng.integers(0, 1000, int(rng.integers(3, 90))) for _ in range(40)]
    prompts = [rng.integers(0, 1000, int(rng.integers(0, 6))) for _ in pool]
    ref = templated_texts(n=20, fill_seed=3)
    keep_of = [rng.random(len(t)) < 0.8 for t in pool]  # key-free per-position mask, carried with its text

    def verdicts(order, **kw):
        seqs, prm = [pool[i] for i in order], [prompts[i] for i in order]
        extra = {}
        if kw.pop("masked", False):
            # windows exist from position max(0, h - len(prompt)) of each text onward
            extra["keep"] = np.concatenate([keep_of[i][max(0, det.h - len(prompts[i])):] for i in order])
        return det.detect_each(seqs, prm, **kw, **extra)

    for kw in ({}, {"reference": ref}, {"masked": True, "count_repeats": True}, {"exclude_prompt_windows": True}):
        alone = {i: verdicts([i], **kw)[0] for i in range(len(pool))}
        for trial in range(4):
            order = list(range(len(pool)))
            random.Random(trial).shuffle(order)
            order = order[: 20 + 25 * trial] + order[:3]  # a sub-batch with duplicates
            for i, d in zip(order, verdicts(order, **kw)):
                assert d == alone[i], (kw, i)


def test_reference_semantics(texts):
    det = parse_protection(KGW).detector(Key(b"k"))
    alone = det.detect_each(texts[:1])[0]
    with_ref = det.detect_each(texts[:1], reference=texts[1:])[0]
    assert alone.n_reference == 0 and alone.n_scored > 0
    assert with_ref.n_scored < alone.n_scored and with_ref.n_reference == alone.n_scored - with_ref.n_scored
    # a text inside its reference has nothing of its own left
    own = det.detect_each(texts[:1], reference=texts[:1])[0]
    assert (own.n_scored, own.n_reference, own.log10_p) == (0, alone.n_scored, 0.0)
    # reference prompts give the contexts of their first tokens: a text continuing the same prompt
    prompt, text = [7, 8, 9], [11, 12, 13, 14]
    plain = det.detect_each([text], [prompt], reference=[text])[0]
    assert plain.n_scored == 1  # (9 -> 11) is not in the reference without its prompt
    assert det.detect_each([text], [prompt], reference=[text], reference_prompts=[prompt])[0].n_scored == 0
    with pytest.raises(UserError, match="reference prompts for"):
        det.detect_each([text], reference=[text, text], reference_prompts=[prompt])
    # an empty reference removes nothing
    assert det.detect_each(texts[:2], reference=[]) == det.detect_each(texts[:2])


def test_family_guard_report():
    det = parse_protection(KGW).detector(Key(b"k"))
    rng = np.random.default_rng(5)
    common = rng.integers(0, 50_000, 30)
    own = [rng.integers(0, 50_000, 30) for _ in range(6)]
    # inputs 0-3 share the 29 tuples of `common` (then their own); 4 and 5 share nothing
    texts = [np.concatenate([common, own[i]]) for i in range(4)] + own[4:]
    fam = det.family(texts, m=3)
    each = det.detect_each(texts)
    assert fam.m == 3 and fam.scored.tolist() == [d.n_scored for d in each]
    assert fam.n_recurring_tuples == 29 and fam.recurring.tolist() == [29] * 4 + [0, 0]
    # the pooled family verdict scores the recurring tuples once each: the pooled verdict of `common`
    pooled = det.detect([common])
    assert (fam.pooled.statistic, fam.pooled.n_scored, fam.pooled.log10_p) == \
        (pooled.statistic, pooled.n_scored, pooled.log10_p)
    # m = 4: no tuple is scored by 4 other inputs
    assert det.family(texts, m=4).n_recurring_tuples == 0
    # default m: 5% of the other inputs, at least 1. Four of six inputs half shared: templated
    assert det.family(texts).m == 1 and fam.templated and "--reference-texts" in fam.warning()
    assert np.allclose(fam.share, [29 / 59] * 4 + [0, 0])
    # texts that share nothing: no recurring tuple, no warning, a pooled verdict over nothing
    alone = det.family(own)
    assert alone.n_recurring_tuples == 0 and not alone.templated and alone.warning() is None
    assert alone.pooled.n_scored == 0 and alone.pooled.log10_p == 0.0
    # the guard changes no verdict, and a reference removes what it holds from the guard too
    assert det.detect_each(texts) == each
    assert det.family(texts, m=3, reference=[common]).n_recurring_tuples == 0
    with pytest.raises(UserError, match="positive integer"):
        det.family(texts, m=0)
