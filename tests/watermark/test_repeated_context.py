"""SynthID's repeated-context mask (generation and detection) and the one-temperature contract."""
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from scipy import stats

from antidistill.watermark import Key, parse_protection
from antidistill.watermark.context import ContextHistory, repeated_windows
from antidistill.watermark.detection import extract_windows

from transformers import LogitsProcessorList

from .conftest import VOCAB, generate
from .helpers import assert_uniform, null_p_values

KEY = Key(b"repeat key")


@contextmanager
def sharpened(model, factor: float):
    """The session's tiny model with its head scaled by `factor` (lower entropy), restored bit for bit."""
    saved = model.lm_head.weight.detach().clone()
    with torch.no_grad():
        model.lm_head.weight.mul_(factor)
    try:
        yield model
    finally:
        with torch.no_grad():
            model.lm_head.weight.copy_(saved)
PROBS = np.array([0.4, 0.2, 0.15, 0.1, 0.08, 0.04, 0.02, 0.01])


def _last_step_draws(spec: str, ids: list[int], n: int = 4000) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Run one processor (one key) over `ids` step by step, as `generate` would, on n identical rows;
    return the last step's input scores, its output scores and the counts of n draws from them."""
    proc = parse_protection(spec).processor(KEY, len(PROBS))
    logits = torch.log(torch.tensor(PROBS, dtype=torch.float32)).repeat(n, 1)
    rows = torch.tensor(ids).repeat(n, 1)
    torch.manual_seed(0)
    for t in range(1, rows.shape[1] + 1):
        out = proc(rows[:, :t], logits)
    draws = torch.multinomial(torch.softmax(out.double(), -1), 1, generator=torch.Generator().manual_seed(1))[:, 0]
    return logits, out, np.bincount(draws.numpy(), minlength=len(PROBS))


@pytest.mark.parametrize("spec, unmasked", [("synthid:depth=16,h=2", "synthid:depth=16,h=2,mask=none"),
                                             ("synthid:depth=3,h=1", "synthid:depth=3,h=1,mask=none"),
                                             ("gumbel:h=2,mask=repeated", "gumbel:h=2")])
def test_a_repeated_context_is_sampled_from_the_unwatermarked_distribution(spec, unmasked):
    """Under one fixed key, the step after a repeated context draws exactly from p: its scores come
    back untouched and n draws pass a chi-square test against p, while the same step without the
    mask (or after a fresh context) draws from the keyed distribution, which the test rejects."""
    context = [5, 6][:parse_protection(spec).h]
    repeated = [1] + context + [3] + context  # the last context occurred at an earlier step
    scores, out, counts = _last_step_draws(spec, repeated)
    assert torch.equal(out, scores)
    assert stats.chisquare(counts, PROBS * counts.sum()).pvalue > 1e-4
    _, _, counts = _last_step_draws(unmasked, repeated)
    assert stats.chisquare(counts, PROBS * counts.sum()).pvalue < 1e-4  # one key's draw is not p
    _, _, counts = _last_step_draws(spec, [1] + context + [3] + [7, 4][:len(context)])  # a fresh context
    assert stats.chisquare(counts, PROBS * counts.sum()).pvalue < 1e-4


def test_history_restarts_with_each_generate_call():
    hist = ContextHistory(h=2, size=3)
    ids = torch.tensor([[9, 1, 2, 7, 1, 2], [9, 1, 2, 7, 8, 9]])
    seen = [hist.repeated(ids[:, :t]).tolist() for t in range(3, 7)]  # contexts (1,2) (2,7) (7,1|8) (1,2|8,9)
    assert seen == [[False, False], [False, False], [False, False], [True, False]]
    assert hist.repeated(ids[:, :3]).tolist() == [False, False]  # not a continuation: a new call
    long = torch.tensor([[1, 2, 3, 4, 5, 1, 2, 9, 9, 9, 9, 1, 2]])
    flags = [hist.repeated(long[:, :t]).item() for t in range(2, 14)]
    # only the last 3 contexts count: (9,9) repeats within them, (1,2) recurs 5 and 6 steps later
    assert flags == [False] * 8 + [True, True, False, False]  # (9,9) repeats; (1,2) is 6 steps back


@pytest.mark.parametrize("size", [3, 1024])
def test_detection_mask_equals_the_generation_mask(tiny_lm, size):
    """The detector leaves out exactly the steps the sampler left unwatermarked (parity through a real
    `generate` on repetitive text), and the mask is the brute-force rule."""
    protection = parse_protection("synthid:depth=16,h=2")
    proc = protection.processor(KEY, VOCAB)
    proc.history.size = size
    flags = []
    repeated = proc.history.repeated
    proc.history.repeated = lambda ids: flags.append(r := repeated(ids)) or r
    prompts = torch.randint(3, 40, (6, 3), generator=torch.Generator().manual_seed(0))
    with sharpened(tiny_lm, 3.0):  # repetitive text
        marked = generate(tiny_lm, prompts, proc, new_tokens=120, seed=2)
    gen_mask = torch.stack(flags, 1).numpy().reshape(-1)  # [B, steps], text order
    windows, _ = extract_windows(marked, prompts, 2)
    assert np.array_equal(repeated_windows(windows, size), gen_mask)
    assert gen_mask.sum() >= 10  # the text does repeat contexts
    brute = []
    for text, prompt in zip(marked.tolist(), prompts.tolist()):
        full = prompt + text
        ctxs = [tuple(full[j - 2:j]) for j in range(len(prompt), len(full))]
        brute += [c in ctxs[max(0, k - size):k] for k, c in enumerate(ctxs)]
    assert np.array_equal(gen_mask, np.array(brute))
    if size == 1024:  # the detector scores the distinct tuples of the unmasked steps, nothing else
        det = protection.detector(KEY)
        d = det.detect_each(marked[:1], prompts[:1])[0]
        w, _ = extract_windows(marked[:1], prompts[:1], 2)
        fresh = ~repeated_windows(w)
        assert d.n_scored == len(np.unique(det.prf_inputs(w.contexts[fresh], w.tokens[fresh])))


def test_masked_detection_ignores_a_repeated_ngram_even_without_dedup():
    det = parse_protection("synthid:depth=16,h=4").detector(Key(b"k"))
    text = np.tile(np.random.default_rng(0).integers(0, 50_000, size=8), 300)
    with pytest.warns(UserWarning, match="dedup=False"):
        without = det.detect([text], dedup=False)
    assert without.n_scored == 8 and without.n_tuples == len(text) - 4  # each context once


@pytest.mark.parametrize("spec", ["synthid:depth=16,h=4,mask=none", "gumbel:h=2,mask=repeated",
                                  "synthid:depth=4,h=1"])
def test_masked_and_unmasked_detectors_are_calibrated_on_repetitive_text(spec, tiny_lm):
    """Unwatermarked samples of a sharpened model (many repeated contexts), a fresh key per 10 texts."""
    prompts = torch.randint(3, VOCAB, (1000, 4), generator=torch.Generator().manual_seed(9))
    with sharpened(tiny_lm, 2.0):
        texts = generate(tiny_lm, prompts, None, new_tokens=40, seed=4)
    assert_uniform(*null_p_values(spec, texts, prompts))


def test_per_text_verdicts_do_not_depend_on_the_other_texts_through_the_mask():
    rng = np.random.default_rng(3)
    texts = [np.tile(rng.integers(0, 30, size=5), 12) for _ in range(4)]
    det = parse_protection("synthid").detector(KEY)
    alone = [det.detect_each([t])[0] for t in texts]
    together = det.detect_each(texts)
    assert [d.as_dict() for d in alone] == [d.as_dict() for d in together]
    assert all(0 < d.n_scored < d.n_tuples for d in alone)  # the mask did leave repeats out


# -- temperature is applied once ----------------------------------------------------------------

TEMPERATURE = 2.0
SHORT_SPECS = ["synthid:depth=16,h=4", "synthid:depth=16,h=4,mask=none", "gumbel:h=4", "gumbel:h=4,mask=repeated",
               "kgw:gamma=0.25,delta=2,h=4,hash=left"]


@pytest.mark.parametrize("spec", SHORT_SPECS)
def test_a_prompt_shorter_than_h_samples_from_softmax_z_over_t(spec, tiny_lm):
    """While the text is shorter than h, generate's own scores equal softmax(z / T), not
    softmax(z / T**2); and 3000 first tokens drawn by generate follow softmax(z / T)."""
    proc = parse_protection(spec).processor(KEY, VOCAB, temperature=TEMPERATURE)
    prompt = torch.tensor([[7]])
    torch.manual_seed(0)
    out = tiny_lm.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, top_k=0,
                           temperature=TEMPERATURE, max_new_tokens=3, min_new_tokens=3, eos_token_id=None,
                           pad_token_id=0, logits_processor=LogitsProcessorList([proc]), return_dict_in_generate=True,
                           output_scores=True, output_logits=True)
    for step in range(3):  # the text has 1, 2, 3 tokens: all shorter than h = 4
        got = torch.log_softmax(out.scores[step].double(), -1)
        once = torch.log_softmax(out.logits[step].double() / TEMPERATURE, -1)
        twice = torch.log_softmax(out.logits[step].double() / TEMPERATURE**2, -1)
        assert torch.allclose(got, once, atol=1e-5)
        assert not torch.allclose(got, twice, atol=1e-2)
    n = 3000
    prompts = torch.full((n, 1), 7)
    torch.manual_seed(1)
    first = tiny_lm.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True, top_k=0,
                             temperature=TEMPERATURE, max_new_tokens=1, eos_token_id=None, pad_token_id=0,
                             logits_processor=LogitsProcessorList([parse_protection(spec).processor(KEY, VOCAB,
                                                                                        temperature=TEMPERATURE)]))
    counts = np.bincount(first[:, 1].numpy(), minlength=VOCAB)
    with torch.no_grad():
        z = tiny_lm(prompts[:1]).logits[0, -1].double()
    for t, law in ((TEMPERATURE, "once"), (TEMPERATURE**2, "twice")):
        p = torch.softmax(z / t, -1).numpy()
        top = np.flatnonzero(p * n >= 10)  # tokens expected 10+ times, the rest pooled
        obs = np.append(counts[top], n - counts[top].sum())
        exp = np.append(p[top], 1 - p[top].sum()) * n
        pvalue = stats.chisquare(obs, exp).pvalue
        assert (pvalue > 1e-4) if law == "once" else (pvalue < 1e-4), (law, pvalue)
