"""Null calibration of every detector: random text, natural text, repetitive text, wrong keys."""
import numpy as np
import pytest
import torch

from antidistill.watermark import Key, parse_protection

from .conftest import VOCAB, generate
from .helpers import SPECS, assert_uniform, null_p_values

N_RANDOM = 10_000


@pytest.mark.parametrize("spec", SPECS)
def test_random_sequences_give_uniform_p_values(spec):
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 120, size=N_RANDOM)
    seqs = [rng.integers(0, 50_000, size=n) for n in lengths]
    assert_uniform(*null_p_values(spec, seqs))


@pytest.fixture(scope="module")
def natural_text(tiny_lm):
    """Unwatermarked samples of a small random transformer: repetitive, skewed, model-like."""
    prompts = torch.randint(3, VOCAB, (1000, 4), generator=torch.Generator().manual_seed(7))
    return generate(tiny_lm, prompts, None, new_tokens=30, seed=3), prompts


@pytest.mark.parametrize("spec", SPECS)
def test_natural_text_gives_uniform_p_values(spec, natural_text):
    completions, prompts = natural_text
    assert_uniform(*null_p_values(spec, completions, prompts))


@pytest.mark.parametrize("spec", SPECS)
def test_wrong_keys_on_watermarked_text_give_uniform_p_values(spec, tiny_lm):
    protection = parse_protection(spec)
    # 1,500 texts (150 wrong keys): at 500 the FPR check at 1e-3 has an upper bound of 3 hits, and the
    # masked synthid texts drew 4 (a 0.2% tail; 6 key sets over the same texts gave 6 / 3000)
    prompts = torch.randint(3, VOCAB, (1500, 4), generator=torch.Generator().manual_seed(11))
    marked = generate(tiny_lm, prompts, protection.processor(Key(b"the real key"), VOCAB), new_tokens=30, seed=5)
    assert_uniform(*null_p_values(spec, marked, prompts, key_label="wrong key"))
    # ...while the right key, pooled over a few of the same texts, is overwhelming.
    assert protection.detector(Key(b"the real key")).detect(marked[:20], prompts[:20]).log10_p < -10


@pytest.mark.parametrize("spec", [parse_protection(s).spec for s in SPECS])
def test_repeated_ngram_is_not_watermarked_with_dedup(spec):
    # dedup's own effect: the repeated-context mask (test_repeated_context.py) would hide it
    det = parse_protection(spec.replace("mask=repeated", "mask=none")).detector(Key(b"k"))
    period = 8
    rng = np.random.default_rng(0)
    # The first random 8-gram whose cyclic windows lean green (not chosen for its deduplicated
    # score), repeated 300 times: the classic false alarm of repetitive text.
    for _ in range(100):
        text = np.tile(rng.integers(0, 50_000, size=period), 300)
        with pytest.warns(UserWarning, match="dedup=False"):
            without = det.detect([text], dedup=False)
        if without.z > 5:
            break
    assert without.log10_p < -6  # without dedup: overwhelming "evidence" from one n-gram
    with_dedup = det.detect([text])
    assert with_dedup.n_scored <= period and with_dedup.n_tuples == without.n_scored
    # with dedup the verdict is that of one period's distinct windows
    one_period = det.detect([text[:period + det.h]])
    assert (with_dedup.statistic, with_dedup.n_scored) == (one_period.statistic, one_period.n_scored)
    assert with_dedup.p_value > 1e-3


def test_pooled_detection_dedups_across_texts():
    det = parse_protection("kgw").detector(Key(b"k"))
    seq = list(np.random.default_rng(0).integers(0, 50_000, 200))
    single = det.detect([seq])
    pooled = det.detect([seq] * 50)
    assert pooled.n_scored == single.n_scored and pooled.statistic == single.statistic
    assert pooled.n_tuples == 50 * single.n_tuples
    # a per-text verdict reads its own text only: three copies get three copies of one verdict
    each = det.detect_each([seq] * 3)
    assert each == [single] * 3


def test_prompt_windows_can_be_excluded():
    det = parse_protection("kgw:h=2").detector(Key(b"k"))
    prompt = [5, 6, 7, 8, 9, 10]
    completion = [5, 6, 7, 8, 11, 12, 13]  # first tuples (windows 5,6->7 and 6,7->8) copy the prompt
    base = det.detect([completion], [prompt])
    excl = det.detect([completion], [prompt], exclude_prompt_windows=True)
    assert base.n_scored == 7 and excl.n_scored == 5
    # the context of the first completion tokens reaches into the prompt
    assert det.detect([completion]).n_scored == 5
