"""Entropy-aware detection: key-free choice-point masks keep the test exact, weighted tails are bounds."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from antidistill.watermark import Key, UserError, parse_protection
from antidistill.watermark.detection import extract_windows
from antidistill.watermark.entropy import ChoiceRule, choice_points, reference_uncertainty
from antidistill.watermark.stats import binom_log_sf, weighted_log_sf_bound

from .conftest import VOCAB, generate
from .helpers import SPECS, assert_uniform, randomized_p

KGW = "kgw:gamma=0.25,delta=2,h=1,hash=left"


def test_chernoff_bound_never_below_the_exact_tail():
    det = parse_protection(KGW).detector(Key(b"k"))
    g = det.protection.gamma_eff
    for n in (10, 100, 1000):
        for k in range(0, n + 1, max(1, n // 20)):
            exact = binom_log_sf(k, n, g)
            bound = weighted_log_sf_bound(k, np.ones(n), det.log_mgf)
            assert bound >= exact - 1e-9
            if k > 0.6 * n:  # the bound is tight up to a polynomial factor in the far tail
                assert bound - exact < math.log(10 * n)
    gum = parse_protection("gumbel:h=2").detector(Key(b"k"))
    for x in (50.0, 80.0, 150.0):
        assert weighted_log_sf_bound(x, np.ones(50), gum.log_mgf) >= stats.gamma.logsf(x, 50) - 1e-9


def test_weighted_bound_holds_by_simulation():
    det = parse_protection("synthid:depth=4,h=1").detector(Key(b"k"))
    rng = np.random.default_rng(0)
    w = rng.exponential(size=40)
    sims = (rng.binomial(4, 0.5, size=(200_000, 40)) * w).sum(1)
    for q in (0.9, 0.99, 0.999):
        x = np.quantile(sims, q)
        assert weighted_log_sf_bound(x, w, det.log_mgf) >= math.log((sims >= x).mean()) - 0.05


@pytest.mark.parametrize("spec", SPECS)
def test_prefix_only_mask_and_weights_keep_random_text_calibrated(spec):
    """Random text, a fresh key per 10 texts, a mask and weights that depend on the prefix only
    (here: on the previous token): unweighted p-values stay exactly uniform, weighted ones are
    conservative (FPR at most alpha)."""
    rng = np.random.default_rng(1)
    protection = parse_protection(spec)
    seqs = [rng.integers(0, 5000, size=n) for n in rng.integers(30, 120, size=3000)]
    windows, _ = extract_windows(seqs, None, protection.context_width)
    # the previous token of each scored position (0 at a text's first token): prefix-only
    starts = np.r_[0, np.cumsum([len(s) for s in seqs])]
    flat = np.concatenate(seqs)
    h = protection.context_width
    pos = np.concatenate([np.arange(starts[i] + h, starts[i + 1]) for i in range(len(seqs))])
    prev = np.where(pos > starts[windows.seq_index], flat[np.maximum(pos - 1, 0)], 0)
    assert len(prev) == len(windows.tokens)
    keep = prev % 3 != 0
    weights = (prev % 7).astype(float)
    rand, actual, weighted = [], [], []
    for i in range(0, len(seqs), 10):
        det = protection.detector(Key(f"null {i}".encode()))
        lo, hi = np.searchsorted(windows.seq_index, [i, i + 10])
        d = det.detect_each(seqs[i:i + 10], keep=keep[lo:hi])
        rand.append(randomized_p(det, d, rng))
        actual += [x.p_value for x in d]
        weighted += [x.p_value for x in det.detect_each(seqs[i:i + 10], weights=weights[lo:hi])]
    assert_uniform(np.concatenate(rand), np.array(actual))
    weighted = np.array(weighted)
    for alpha in (1e-2, 1e-3):
        assert (weighted <= alpha).sum() <= stats.binom.ppf(0.99, len(weighted), alpha)


def test_reference_mask_on_model_text(tiny_lm):
    """The reference's uncertainty lines up with the detector's windows, its mask is key-free
    (the same for every key), and on watermarked text the filtered test keeps its power."""
    prompts = torch.randint(3, VOCAB, (24, 4), generator=torch.Generator().manual_seed(2))
    protection = parse_protection(KGW)
    marked = generate(tiny_lm, prompts, protection.processor(Key(b"real"), VOCAB), new_tokens=30, seed=1)
    top1, ent = reference_uncertainty(tiny_lm, marked, prompts, protection.context_width, batch_size=7)
    assert top1.shape == (24 * 30,) and np.all((top1 > 0) & (top1 <= 1)) and np.all(ent >= 0)
    logits = tiny_lm(torch.cat([prompts, marked], 1)).logits[:, 3:-1].softmax(-1)  # predicts positions 4..
    assert np.allclose(top1.reshape(24, 30), logits.amax(-1).detach().numpy(), atol=1e-5)
    rule = ChoiceRule(max_top1=0.9, min_entropy=0.5)
    keep, w = choice_points(tiny_lm, marked, prompts, 1, rule)
    assert w is None and 0 < keep.sum() < len(keep)
    det = protection.detector(Key(b"real"))
    assert det.detect(marked, prompts, keep=keep).log10_p < -10
    _, w = choice_points(tiny_lm, marked, prompts, 1, ChoiceRule(weighted=True))
    weighted = det.detect(marked, prompts, weights=w)
    assert weighted.tail == "chernoff-bound" and weighted.log10_p < -10


def test_bad_masks_and_thresholds_are_refused():
    det = parse_protection(KGW).detector(Key(b"k"))
    with pytest.raises(UserError, match="keep mask"):
        det.detect([[1, 2, 3]], keep=np.ones(5, bool))
    with pytest.raises(UserError, match="weights"):
        det.detect([[1, 2, 3]], weights=-np.ones(2))
    with pytest.raises(UserError, match="top-1"):
        ChoiceRule(max_top1=1.5)


def test_sweet_kgw_biases_only_uncertain_steps(tiny_lm):
    """kgw:...,entropy=H leaves rows whose entropy is below H untouched and biases the rest like
    plain KGW; the spec prints back with the option, plain KGW's spec is unchanged."""
    sweet = parse_protection(KGW + ",entropy=2")
    assert sweet.spec == KGW + ",entropy=2" and parse_protection(KGW).spec == KGW
    ids = torch.randint(3, VOCAB, (64, 5), generator=torch.Generator().manual_seed(4))
    scores = tiny_lm(ids).logits[:, -1].detach()
    logp = torch.log_softmax(scores, -1)
    entropy = -(logp.exp() * logp).sum(-1)
    assert (entropy < 2).any() and (entropy >= 2).any()
    out = sweet.processor(Key(b"k"), VOCAB)(ids, scores.clone())
    plain = parse_protection(KGW).processor(Key(b"k"), VOCAB)(ids, scores.clone())
    assert torch.equal(out[entropy < 2], scores[entropy < 2])
    assert torch.equal(out[entropy >= 2], plain[entropy >= 2])


@pytest.mark.slow
@pytest.mark.parametrize("spec", [KGW, "gumbel:h=2"])
def test_reference_rule_on_random_text_keeps_fpr(tiny_lm, spec):
    """Null calibration with a real reference model: random text, the model's choice points, a fresh
    key per 10 texts: exact p-values stay uniform, entropy-weighted ones stay at or below alpha."""
    rng = np.random.default_rng(5)
    prompts = rng.integers(3, VOCAB, size=(2000, 4))
    texts = rng.integers(3, VOCAB, size=(2000, 30))
    top1, ent = reference_uncertainty(tiny_lm, texts, prompts, 2, batch_size=500)
    keep, _ = ChoiceRule(max_top1=float(np.median(top1))).apply(top1, ent)
    _, weights = ChoiceRule(weighted=True).apply(top1, ent)
    assert 0.3 < keep.mean() < 0.7
    protection = parse_protection(spec)
    rand, actual, weighted = [], [], []
    for i in range(0, len(texts), 10):
        det = protection.detector(Key(f"reference null {i}".encode()))
        sl = slice(i * 30, (i + 10) * 30)
        d = det.detect_each(texts[i:i + 10], prompts[i:i + 10], keep=keep[sl])
        rand.append(randomized_p(det, d, rng))
        actual += [x.p_value for x in d]
        weighted += [x.p_value for x in det.detect_each(texts[i:i + 10], prompts[i:i + 10], weights=weights[sl])]
    assert_uniform(np.concatenate(rand), np.array(actual))
    weighted = np.array(weighted)
    for alpha in (1e-2, 1e-3):
        assert (weighted <= alpha).sum() <= stats.binom.ppf(0.99, len(weighted), alpha)


def test_lattice_tail_is_exact_for_integer_weights():
    from itertools import product

    from antidistill.watermark.stats import lattice_log_sf

    w, g = np.array([1, 3, 3, 2, 5]), 0.25
    for x in range(0, 15):
        brute = sum(np.prod([g if b else 1 - g for b in bits]) for bits in product([0, 1], repeat=5)
                    if np.dot(bits, w) >= x)
        got = lattice_log_sf(x, w, 1, g)
        assert (brute == 0 and got is None) or math.isclose(math.exp(got), brute, rel_tol=1e-9)
    assert lattice_log_sf(2.0, np.array([0.5, 1.0]), 1, g) is None  # not integers: the caller bounds it


@pytest.mark.parametrize("spec", [KGW, "synthid:depth=4,h=1", "gumbel:h=1"])
def test_count_repeats_keeps_repetitive_text_calibrated(spec):
    """Text from a 30-token vocabulary repeats its tuples many times; weighting each distinct tuple by
    its count keeps the pooled test valid (a fresh key per text)."""
    rng = np.random.default_rng(3)
    protection = parse_protection(spec)
    p = []
    for i in range(1500):
        det = protection.detector(Key(f"repeat null {i}".encode()))
        d = det.detect(rng.integers(0, 30, size=(3, 60)), count_repeats=True)
        assert d.tail == ("chernoff-bound" if spec.startswith("gumbel") else "exact")
        p.append(d.p_value)
    p = np.array(p)
    for alpha in (0.05, 0.01):
        assert (p <= alpha).sum() <= stats.binom.ppf(0.99, len(p), alpha)
    if not spec.startswith("gumbel"):  # exact (discrete, so at most uniform): not far below alpha either
        assert (p <= 0.05).mean() > 0.02
