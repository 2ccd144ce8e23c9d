"""Power through real `model.generate`, generation/detection parity, and distortion-freeness."""
import numpy as np
import pytest
import torch
from scipy import stats

from antidistill.watermark import Key, parse_protection
from antidistill.watermark.hashing import to_unit
from antidistill.watermark.synthid import g_values

from .conftest import VOCAB, generate
from .helpers import SPECS

KEY = Key(b"power key")
NEW_TOKENS = 200  # every scheme must reach p < 1e-6 within this many generated tokens


@pytest.mark.parametrize("spec", SPECS)
def test_generated_text_is_detected_within_200_tokens(spec, tiny_lm):
    protection = parse_protection(spec)
    prompts = torch.randint(3, VOCAB, (6, 5), generator=torch.Generator().manual_seed(3))
    marked = generate(tiny_lm, prompts, protection.processor(KEY, VOCAB), new_tokens=NEW_TOKENS, seed=1)
    plain = generate(tiny_lm, prompts, None, new_tokens=NEW_TOKENS, seed=1)
    det = protection.detector(KEY)
    # each text tested on its own (in one batch, tuples the texts share would not count per text)
    for text, prompt in zip(marked, prompts):
        d = det.detect_each([text], [prompt])[0]
        assert d.p_value < 1e-6, d
    assert np.median([det.detect_each([t], [p])[0].p_value for t, p in zip(plain, prompts)]) > 1e-2


@pytest.mark.parametrize("spec", SPECS)
def test_processor_and_detector_agree_on_every_candidate(spec):
    """The detector recomputes exactly the per-candidate values the processor used."""
    protection = parse_protection(spec)
    proc, det = protection.processor(KEY, VOCAB), protection.detector(KEY)
    ids = torch.randint(0, VOCAB, (8, 12), generator=torch.Generator().manual_seed(0))
    h = max(det.h, 0)
    context = ids[:, ids.shape[1] - h:].repeat_interleave(VOCAB, 0)
    tokens = torch.arange(VOCAB).repeat(8)
    per_tuple = det.tuple_scores(det.prf_inputs(context, tokens)).reshape(8, VOCAB)
    if protection.scheme in ("kgw", "unigram"):
        biased = proc(ids, torch.zeros(8, VOCAB))
        assert np.array_equal(biased.numpy() > 0, per_tuple == 1.0)
        assert abs((per_tuple == 1).mean() - protection.gamma) < 0.02
    elif protection.scheme == "gumbel":
        u = to_unit(proc.window_prf(ids))
        assert np.allclose(-np.log1p(-u), per_tuple)
    else:
        g = g_values(proc.window_prf(ids), protection.depth).sum(-1)
        assert np.array_equal(g, per_tuple)


def _next_token_counts(spec, probs, n_keys, temperature=1.0):
    protection = parse_protection(spec)
    logits = torch.log(torch.tensor(probs))[None, :]
    ids = torch.tensor([[11, 12, 13, 14, 15]])
    counts = np.zeros(len(probs))
    torch.manual_seed(0)
    for k in range(n_keys):
        out = protection.processor(Key(f"key {k}".encode()), len(probs), temperature=temperature)(ids, logits)
        counts += torch.softmax(out[0].double(), -1).numpy()  # the distribution `generate` samples from
    return counts


PROBS = [0.4, 0.2, 0.15, 0.1, 0.08, 0.04, 0.02, 0.01]


@pytest.mark.parametrize("spec", ["gumbel:h=2", "synthid:depth=16,h=4", "synthid:depth=3,h=1"])
def test_distortion_free_in_expectation_over_keys(spec):
    n_keys = 3000
    counts = _next_token_counts(spec, PROBS, n_keys)
    expected = np.array(PROBS) * n_keys
    # over random keys each draw is exactly from p, so counts are multinomial(n, p): a valid
    # chi-square test at level 1e-4 (kgw below fails it at this size)
    assert stats.chisquare(counts, expected).pvalue > 1e-4


def test_distortion_test_has_power_kgw_is_biased():
    counts = _next_token_counts("kgw:gamma=0.25,delta=2,h=1", PROBS, 3000)
    # kgw's next-token law over keys is the expectation of softmax(logits + delta*green): not p
    assert stats.chisquare(counts, np.array(PROBS) * 3000).pvalue < 1e-4


def test_gumbel_respects_temperature_and_top_k():
    probs = [0.5, 0.3, 0.2]
    counts = _next_token_counts("gumbel:h=1", probs, 3000, temperature=2.0)
    tempered = np.sqrt(probs) / np.sqrt(probs).sum()
    assert stats.chisquare(counts, tempered * 3000).pvalue > 1e-3
    proc = parse_protection("synthid:h=1").processor(KEY, 5, top_k=2)
    out = proc(torch.tensor([[1, 2]]), torch.log(torch.tensor([[0.1, 0.4, 0.3, 0.15, 0.05]])))
    assert int(out.argmax()) in (1, 2)


def test_rows_shorter_than_the_context_pass_unchanged():
    proc = parse_protection("kgw:h=4").processor(KEY, VOCAB)
    scores = torch.randn(2, VOCAB)
    assert torch.equal(proc(torch.tensor([[1, 2, 3], [4, 5, 6]]), scores), scores)


@pytest.mark.parametrize("depth", [1, 3, 8, 16])
def test_tournament_by_pattern_equals_layer_by_layer(depth):
    from antidistill.watermark.synthid import tournament, tournament_by_pattern
    gen = torch.Generator().manual_seed(depth)
    probs = torch.softmax(2 * torch.randn(4, 3000, generator=gen), -1).double()
    prf = torch.randint(0, 2**32, (4, 3000), generator=gen)
    fast = tournament_by_pattern(probs, prf, depth)
    assert torch.allclose(fast, tournament(probs, g_values(prf, depth)), rtol=1e-12, atol=1e-15)
    assert torch.allclose(fast.sum(-1), torch.ones(4, dtype=torch.float64))
