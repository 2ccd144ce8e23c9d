"""One key, many texts of a few templates: where per-text false positives cluster.

Each per-text p-value is exact over the randomness of the key, but an auditor holds one key. Texts
of one template share (window, token) tuples; with the tuples shared, every text of a family scores
the same few draws, so a key whose draws happen to be high flags the whole family at once. The
default per-text rule (skip tuples another text of the batch contains) must make the number of
false positives per key behave like Binomial(N, alpha); the shared-keeping variant shows the
failure the rule prevents, on the same texts.
"""
import numpy as np
import pytest
from scipy import stats

from antidistill.watermark import Key, UserError, parse_protection

from .helpers import SPECS

ALPHA = 0.01
N_KEYS = 40


def templated_texts(n: int = 400, n_templates: int = 4, length: int = 40, seed: int = 0) -> list[np.ndarray]:
    """Texts of a few templates: a fixed skeleton per template, three phrasings at every fourth
    position, a random number (one of 100 tokens) at every third: the shape of the demo's
    reasoning traces, with enough of each text its own that a per-text verdict has tuples to score."""
    rng = np.random.default_rng(seed)
    skeletons = rng.integers(100, 1000, size=(n_templates, length))
    phrasings = rng.integers(100, 1000, size=(n_templates, length, 3))
    texts = []
    for i in range(n):
        t = i % n_templates
        text = skeletons[t].copy()
        slots = np.arange(0, length, 4)
        text[slots] = phrasings[t, slots, rng.integers(0, 3, size=len(slots))]
        text[np.arange(2, length, 3)] = rng.integers(0, 100, size=len(range(2, length, 3)))
        texts.append(text)
    return texts


def flags_per_key(spec: str, texts, shared: str) -> np.ndarray:
    protection = parse_protection(spec)
    counts = []
    for k in range(N_KEYS):
        det = protection.detector(Key(f"one-key test {k}".encode()))
        counts.append(sum(d.p_value <= ALPHA for d in det.detect_each(texts, shared=shared)))
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


@pytest.mark.parametrize("spec", SPECS)
def test_one_key_false_positives_do_not_cluster(spec, texts):
    counts = flags_per_key(spec, texts, "drop")
    n = len(texts)
    if not spec.startswith("unigram"):  # unigram's tuples are single tokens: every one is shared here
        assert counts.sum() > 0  # the texts keep enough of their own tuples to be tested at all
    lo, hi = stats.binom.interval(0.999, N_KEYS * n, ALPHA)
    assert counts.sum() <= hi, f"{counts.sum()} false positives over {N_KEYS} keys x {n} texts"
    assert dispersion_p(counts, n) > 1e-3, f"per-key counts overdispersed: {counts.tolist()}"
    # the worst key stays where Binomial(n, alpha) puts the maximum of N_KEYS draws
    assert counts.max() <= stats.binom.ppf(1 - 1e-3 / N_KEYS, n, ALPHA), counts.tolist()


@pytest.mark.parametrize("spec", SPECS)
def test_no_draw_is_scored_in_two_texts(spec, texts):
    det = parse_protection(spec).detector(Key(b"one key"))
    inputs, sel, dropped, windows, _ = det._selected(texts, per_sequence=True, shared="drop")
    assert len(np.unique(inputs[sel])) == len(sel)  # every scored draw belongs to one text only
    assert len(dropped) > 0  # the templates do share tuples


def test_keeping_shared_tuples_clusters_on_the_same_texts(texts):
    """The failure the default prevents, measured on these texts: one key flags a whole family."""
    spec = "kgw:gamma=0.25,delta=2,h=1,hash=left"
    with pytest.warns(UserWarning, match="shared='keep'"):
        counts = flags_per_key(spec, texts, "keep")
    assert dispersion_p(counts, len(texts)) < 1e-6, counts.tolist()


def test_reference_texts_remove_their_tuples(texts):
    det = parse_protection("kgw:gamma=0.25,delta=2,h=1").detector(Key(b"k"))
    alone = det.detect_each(texts[:1])[0]
    with_ref = det.detect_each(texts[:1], reference=texts[1:])[0]
    assert alone.n_shared == 0 and alone.n_scored > 0
    assert with_ref.n_scored < alone.n_scored and with_ref.n_shared == alone.n_scored - with_ref.n_scored


def test_reference_texts_need_the_shared_rule(texts):
    det = parse_protection("kgw").detector(Key(b"k"))
    with pytest.raises(UserError, match="reference texts only apply"):
        det.detect_each(texts[:1], shared="keep", reference=texts[1:])
