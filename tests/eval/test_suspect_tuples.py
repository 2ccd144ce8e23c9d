"""`measures.suspect`: the one way a suspect's audit tuples are collected (the CLI and the runner).

Tiny random models and random token ids: each test checks that a `TupleCollection` field does
what it says, against the building blocks of `measures.audit` called by hand.
"""
import numpy as np
import pytest

from antidistill.eval.measures.audit import (frequent_kgrams, generation_tuples, phi_mask, reading_tuples,
                                             reference_top1, score, wrong_keys)
from antidistill.eval.measures.suspect import TupleCollection, score_keys, suspect_tuples
from antidistill.watermark import Key, parse_protection
from antidistill.watermark.errors import UserError

H = 1


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from antidistill.students.models.presets import build_model

    cache = tmp_path_factory.mktemp("suspect-cache")
    suspect, tok = build_model("tiny", seed=3, cache_dir=cache)
    reference, _ = build_model("tiny", seed=4, cache_dir=cache, tokenizer=tok)
    return suspect.eval(), reference.eval(), tok


@pytest.fixture(scope="module")
def records(models):
    _, _, tok = models
    rng = np.random.default_rng(0)
    # A small vocabulary slice so that (h+1)-grams repeat and filter phi has something to rank.
    vocab = rng.choice(np.arange(10, tok.vocab_size), size=30, replace=False)
    return [{"prompt_ids": rng.choice(vocab, size=int(rng.integers(2, 5))).tolist(),
             "completion_ids": rng.choice(vocab, size=int(rng.integers(6, 14))).tolist()} for _ in range(12)]


def _pairs(records):
    return [(r["prompt_ids"], r["completion_ids"]) for r in records]


def _same(a, b):
    assert np.array_equal(a.contexts, b.contexts) and np.array_equal(a.tokens, b.tokens)
    assert a.n_texts == b.n_texts


def test_reading_mode_is_reading_tuples_on_the_first_texts(models, records):
    suspect, _, tok = models
    t, keep = suspect_tuples(suspect, tok, H, TupleCollection(), records=records)
    _same(t, reading_tuples(suspect, _pairs(records), H))
    assert keep is None and t.n_texts == len(records)
    few, _ = suspect_tuples(suspect, tok, H, TupleCollection(max_texts=5), records=records)
    _same(few, reading_tuples(suspect, _pairs(records[:5]), H))


def test_contrast_selection_uses_the_reference(models, records):
    suspect, reference, tok = models
    how = TupleCollection(selection="contrast")
    assert how.needs_reference
    with pytest.raises(UserError, match="reference"):
        suspect_tuples(suspect, tok, H, how, records=records)
    t, keep = suspect_tuples(suspect, tok, H, how, records=records, reference=reference)
    _same(t, reading_tuples(suspect, _pairs(records), H, reference=reference))
    top1, _ = suspect_tuples(suspect, tok, H, TupleCollection(), records=records)
    assert not np.array_equal(t.tokens, top1.tokens)  # the reference changes what is chosen
    assert keep is None  # no choice-point filter asked


def test_choice_filter_keeps_positions_the_reference_is_unsure_of(models, records):
    suspect, reference, tok = models
    probs = reference_top1(reference, _pairs(records), H)
    threshold = float(np.median(probs))  # keeps about half, so the mask is not trivial
    t, keep = suspect_tuples(suspect, tok, H, TupleCollection(max_reference_prob=threshold), records=records,
                             reference=reference)
    assert keep is not None and len(keep) == len(t.tokens)
    assert np.array_equal(keep, probs < threshold) and 0 < keep.sum() < len(keep)
    _same(t, reading_tuples(suspect, _pairs(records), H))  # top1 still: the filter only masks


def test_phi_filter_reads_the_whole_corpus_and_combines_with_the_choice_filter(models, records):
    suspect, reference, tok = models
    how = TupleCollection(filter_top=10, max_texts=6, max_reference_prob=0.9)
    t, keep = suspect_tuples(suspect, tok, H, how, records=records, reference=reference)
    grams = frequent_kgrams([r["completion_ids"] for r in records], [r["prompt_ids"] for r in records], H, 10)
    phi = phi_mask(t, grams)
    assert np.array_equal(keep, phi & (reference_top1(reference, _pairs(records[:6]), H) < 0.9))
    assert t.n_texts == 6
    # the k-grams come from all records, not only the texts read
    assert grams != frequent_kgrams([r["completion_ids"] for r in records[:6]],
                                    [r["prompt_ids"] for r in records[:6]], H, 10)


def test_generation_mode_answers_the_prompts_with_the_settings_and_seed(models, records):
    suspect, reference, tok = models
    how = TupleCollection(mode="generation", temperature=0.8, max_new_tokens=6, seed=11, max_texts=5)
    t, keep = suspect_tuples(suspect, tok, H, how, records=records)
    prompts = [r["prompt_ids"] for r in records[:5]]
    by_hand, _ = generation_tuples(suspect, tok, prompts, H, max_new_tokens=6, temperature=0.8, seed=11)
    _same(t, by_hand)
    assert keep is None and t.exclude_pairs is not None  # windows of the prompts are excluded
    # given prompts replace the records' prompts; no records needed then
    own = [[12, 40, 7], [99, 3]]
    t2, _ = suspect_tuples(suspect, tok, H, how, prompt_ids=own)
    _same(t2, generation_tuples(suspect, tok, own, H, max_new_tokens=6, temperature=0.8, seed=11)[0])
    # an attack's decoding settings override the audit's temperature
    greedy, _ = suspect_tuples(suspect, tok, H, how, records=records, decode_settings={"temperature": 0.0})
    _same(greedy, generation_tuples(suspect, tok, prompts, H, max_new_tokens=6, temperature=0.0, seed=11)[0])
    # contrast selection is a reading-mode choice: generation mode needs no reference for it
    assert not TupleCollection(mode="generation", selection="contrast").needs_reference
    # the choice-point filter covers generation-mode windows too
    _, keep = suspect_tuples(suspect, tok, H, TupleCollection(mode="generation", max_new_tokens=6, seed=11,
                                                              max_texts=5, max_reference_prob=0.5),
                             records=records, reference=reference)
    comps = generation_tuples(suspect, tok, prompts, H, max_new_tokens=6, temperature=1.0, seed=11)[1]
    assert np.array_equal(keep, reference_top1(reference, list(zip(prompts, comps)), H) < 0.5)


@pytest.mark.parametrize("field, value", [("mode", "listening"), ("selection", "top2"), ("max_reference_prob", 0.0),
                                          ("max_reference_prob", 1.5), ("temperature", -1.0),
                                          ("max_new_tokens", 0), ("max_texts", 2.5), ("filter_top", -3)])
def test_a_bad_collection_is_refused_with_a_user_error(field, value):
    with pytest.raises(UserError, match=field.split("_")[0]):
        TupleCollection(**{field: value})
    assert issubclass(UserError, ValueError)  # a library caller's `except ValueError` catches it


def test_reading_mode_needs_the_records(models):
    suspect, _, tok = models
    with pytest.raises(UserError, match="records"):
        suspect_tuples(suspect, tok, H, TupleCollection(), prompt_ids=[[1, 2]])


def test_score_keys_scores_the_key_first_then_the_public_wrong_keys(models, records):
    suspect, _, tok = models
    prot, key = parse_protection("kgw:gamma=0.25,delta=2,h=1,hash=left"), Key.from_text("suspect-test")
    t, _ = suspect_tuples(suspect, tok, H, TupleCollection(), records=records)
    results = score_keys(prot, key, t, n_wrong=3, mode="reading")
    assert [r.detection.key_fingerprint for r in results] == [k.fingerprint for k in [key, *wrong_keys(3)]]
    assert results[0].detection == score(prot.detector(key), t, mode="reading").detection
    assert all(r.n_texts == len(records) for r in results)


@pytest.fixture(scope="module")
def other_suspect():
    """A suspect whose tokenizer is not the auditor's (another byte-level BPE)."""
    from antidistill.students.models.presets import build_model
    from antidistill.students.models.tokenizer import train_tokenizer

    tok = train_tokenizer([f"What is {i} + {i + 1}? Answer: {2 * i + 1}" for i in range(300)], vocab_size=300)
    model, _ = build_model("tiny", seed=5, tokenizer=tok)
    return model.eval(), tok


def _text_records(tok, n=10):
    from antidistill.students.batching import encode_prompts

    texts = [f"What is {i} + {3 * i}?" for i in range(n)]
    return [{"prompt": t, "prompt_ids": p, "completion_ids": tok(f" Answer: {4 * i}", add_special_tokens=False)["input_ids"]}
            for i, (t, p) in enumerate(zip(texts, encode_prompts(tok, texts)))]


def test_a_suspect_with_another_tokenizer_is_asked_our_texts_and_read_back_in_our_tokens(models, other_suspect):
    from antidistill.eval.measures.audit import retokenized, sample_completions, window_tuples
    from antidistill.students.batching import encode_prompts

    _, reference, tok = models
    suspect, theirs = other_suspect
    records = _text_records(tok)
    how = TupleCollection(mode="generation", temperature=0.8, max_new_tokens=6, seed=11, max_texts=8)
    t, keep = suspect_tuples(suspect, theirs, H, how, records=records, ours=tok)
    comps = sample_completions(suspect, theirs, encode_prompts(theirs, [r["prompt"] for r in records[:8]]),
                               max_new_tokens=6, temperature=0.8, seed=11)
    ours = retokenized(comps, theirs, tok)
    assert ours == [tok(x, add_special_tokens=False)["input_ids"] for x in theirs.batch_decode(comps, skip_special_tokens=True)]
    _same(t, window_tuples(ours, [r["prompt_ids"] for r in records[:8]], H))
    assert keep is None and t.n_texts == 8
    assert t.tokens.size == 0 or int(t.tokens.max()) < len(tok)  # ids of our vocabulary
    # the choice-point filter reads our reference on our tokens
    _, keep = suspect_tuples(suspect, theirs, H, TupleCollection(mode="generation", temperature=0.8, max_new_tokens=6,
                                                                 seed=11, max_texts=8, max_reference_prob=0.5),
                             records=records, ours=tok, reference=reference)
    assert keep is not None and len(keep) == len(t.tokens)
    with pytest.raises(UserError, match="generation mode only"):
        suspect_tuples(suspect, theirs, H, TupleCollection(), records=records, ours=tok)
    with pytest.raises(UserError, match="another tokenizer"):
        suspect_tuples(suspect, theirs, H, how, prompt_ids=[[1, 2]], ours=tok)


def test_a_clean_suspect_with_another_tokenizer_is_not_accused_under_many_keys(models, other_suspect):
    """Null calibration of the retokenized audit: one clean suspect's tuples, many keys; the
    deduplicated p-values of a clean suspect stay at or above uniform (at most a few below 0.05)."""
    from scipy.stats import binom

    _, _, tok = models
    suspect, theirs = other_suspect
    records = _text_records(tok, 16)
    t, _ = suspect_tuples(suspect, theirs, H, TupleCollection(mode="generation", temperature=1.0, max_new_tokens=12,
                                                              seed=3), records=records, ours=tok)
    prot = parse_protection("kgw:gamma=0.25,delta=2,h=1,hash=left")
    p = np.array([10 ** score(prot.detector(Key.from_text(f"cross-null/{i}")), t, mode="generation").detection.log10_p
                  for i in range(200)])
    assert np.all((p >= 0) & (p <= 1))
    # at most the 1e-4 upper quantile of Binomial(200, 0.05) keys below 0.05
    assert (p < 0.05).sum() <= binom.ppf(1 - 1e-4, 200, 0.05)
