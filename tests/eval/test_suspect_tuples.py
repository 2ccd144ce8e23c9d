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
