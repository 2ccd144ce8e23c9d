"""Each evaluator on tiny fixtures whose answers are computable by hand."""
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from antidistill.eval.measures import stats
from antidistill.eval.measures.audit import Tuples, reading_tuples, running_curve, score
from antidistill.eval.measures.detectability import detectability, tuples_to_significance
from antidistill.eval.measures.quality import correctness, perplexity, teacher_quality
from antidistill.eval.measures.transfer import capability_transfer
from antidistill.students.attacks import edit_sequences
from antidistill.watermark import Key, parse_protection

V = 64
KEY = Key.from_text("test-eval")


# ---------------------------------------------------------------- statistics


def test_paired_exact_test_by_hand():
    # 1 item only a got right, 7 only b got right, 2 both right: X ~ Bin(8, 1/2),
    # p = 2 * P(X <= 1) = 2 * 9/256.
    a = [1, 0, 0, 0, 0, 0, 0, 0, 1, 1]
    b = [0, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    r = stats.paired_exact_test(a, b)
    assert (r["a_only"], r["b_only"], r["n_pairs"]) == (1, 7, 10)
    assert r["p_value"] == pytest.approx(18 / 256)
    assert stats.paired_exact_test([1, 0], [1, 0])["p_value"] == 1.0  # no discordant pair
    assert stats.paired_exact_test([1, 1, 1], [0, 0, 0])["p_value"] == pytest.approx(2 / 8)


def test_clopper_pearson_edges():
    lo, hi = stats.clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10))
    lo, hi = stats.clopper_pearson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 10))


def test_tpr_at_alpha_from_exact_p():
    pos = [-5, -2.5, -1, -4]
    neg = [-0.1, -2.5, -0.5, -0.3]
    r = stats.tpr_at_alpha(pos, neg, 1e-2)
    assert r["tpr"] == 0.75 and r["fpr"] == 0.25
    r = stats.tpr_at_alpha(pos, neg, 1e-3)
    assert r["tpr"] == 0.5 and r["fpr"] == 0.0


def test_roc_auc_and_curve():
    assert stats.roc_auc([3, 2], [1, 2]) == pytest.approx(3.5 / 4)  # one tie counts half
    assert stats.roc_auc([5, 6], [1, 2]) == 1.0
    c = stats.roc_curve([3, 2], [1, 2])
    assert c["fpr"].iloc[0] == 0 and c["tpr"].iloc[-1] == 1 and c["fpr"].is_monotonic_increasing


def test_bootstrap_and_distinct():
    assert stats.bootstrap_ci([0.5] * 20) == (0.5, 0.5)
    lo, hi = stats.bootstrap_ci(np.r_[np.zeros(50), np.ones(50)], seed=1)
    assert lo < 0.5 < hi and hi - lo < 0.3
    assert stats.distinct_n([[1, 2, 1, 2]], 2) == pytest.approx(2 / 3)
    assert stats.distinct_n([[1, 2], [1, 2]], 1) == pytest.approx(2 / 4)


def test_next_token_entropy():
    rng = np.random.default_rng(0)
    assert stats.next_token_entropy([rng.integers(0, 4, size=50_000)]) == pytest.approx(2.0, abs=1e-3)
    assert stats.next_token_entropy([np.arange(300) % 7]) == 0.0  # the successor is a function of the token
    # A Markov chain that keeps its state with probability 0.9: H = h(0.9) bits, h the binary entropy
    flips = rng.random(200_000) < 0.1
    chain = np.cumsum(flips) % 2
    assert stats.next_token_entropy([chain]) == pytest.approx(-(0.9 * np.log2(0.9) + 0.1 * np.log2(0.1)), abs=5e-3)
    assert np.isnan(stats.next_token_entropy([[5]]))


# ---------------------------------------------------------------- attacks


def test_edit_attacks():
    seqs = [list(range(10, 30))]
    assert edit_sequences(seqs, "substitute", 0.0, V) == seqs
    assert edit_sequences(seqs, "delete", 1.0, V) == [[]]
    ins = edit_sequences(seqs, "insert", 1.0, V, seed=3)[0]
    assert len(ins) == 40 and ins[1::2] == seqs[0] and all(4 <= t < V for t in ins[0::2])
    sub = edit_sequences(seqs, "substitute", 0.5, V, seed=0)[0]
    assert len(sub) == 20 and 3 <= sum(a != b for a, b in zip(sub, seqs[0])) <= 17
    assert edit_sequences(seqs, "delete", 0.3, V, seed=5) == edit_sequences(seqs, "delete", 0.3, V, seed=5)


# ---------------------------------------------------------------- teacher quality


class UniformLM(torch.nn.Module):
    """Every next-token distribution is uniform over V: perplexity of anything is exactly V."""

    def __init__(self, vocab=V):
        super().__init__()
        self.vocab = vocab
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab) + 0 * self.w)


def _rec(i, completion, answer="5", ids=(7, 8, 9)):
    return {"id": f"q{i}", "skill": "add", "answer": answer, "completion": completion,
            "prompt_ids": [1, 5], "completion_ids": list(ids)}


def test_teacher_quality_paired_and_perplexity():
    right, wrong = "2 + 3 = 5\nAnswer: 5", "Answer: 6"
    none = [_rec(i, right if i < 8 else wrong) for i in range(10)]  # 8/10
    prot = [_rec(i, right if i in (0, 9) else wrong) for i in range(10)]  # 2/10: 1 win, 7 losses
    assert correctness(none)["correct"].sum() == 8
    assert perplexity(UniformLM(), [[1, 2]], [[3, 4, 5]]) == pytest.approx(V)
    df = teacher_quality({"none": none, "kgw": prot}, reference=UniformLM(), eos_id=2).set_index("protection")
    assert df.loc["kgw", "accuracy"] == 0.2 and df.loc["none", "accuracy"] == 0.8
    assert (df.loc["kgw", "wins_vs_none"], df.loc["kgw", "losses_vs_none"]) == (1, 7)
    assert df.loc["kgw", "p_paired"] == pytest.approx(18 / 256)
    assert df.loc["none", "p_paired"] == 1.0
    assert df.loc["kgw", "perplexity"] == pytest.approx(V)
    assert df.loc["kgw", "mean_length"] == 3 and df.loc["kgw", "distinct_2"] == pytest.approx(2 / 20)


def test_teacher_quality_reasoning_seen_and_extra_forwards():
    none = [_rec(i, "2 + 3 = 5\nAnswer: 5") for i in range(4)]
    trace = [dict(_rec(i, "Answer: 5"), reasoning_seen=s) for i, s in enumerate((0.0, 0.5, 0.5, 1.0))]
    df = teacher_quality({"none": none, "trace:keep=results": trace}).set_index("protection")
    assert df.loc["none", "reasoning_seen"] == 1.0 and df.loc["trace:keep=results", "reasoning_seen"] == 0.5
    assert (df["extra_forwards_per_token"] == 0).all()


# ---------------------------------------------------------------- detectability


def green_sequences(spec, n_seq, length, seed=0):
    """Texts whose every token is green under (spec, KEY): the strongest possible watermark."""
    prot = parse_protection(spec)
    proc = prot.processor(KEY, V)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_seq):
        seq = [int(rng.integers(4, V))]
        for _ in range(length):
            bias = proc(torch.tensor([seq]), torch.zeros(1, V))[0]
            green = torch.nonzero(bias > 0).flatten().numpy()
            green = green[green >= 4]
            seq.append(int(rng.choice(green)))
        out.append(seq[1:])
    return out


def test_detectability_all_green_vs_random():
    spec = "kgw:gamma=0.25,delta=2,h=1,hash=left"
    pos = green_sequences(spec, 12, 30)
    rng = np.random.default_rng(1)
    neg = [rng.integers(4, V, 30).tolist() for _ in range(40)]
    table, roc = detectability({spec: (pos, None)}, (neg, None), KEY, V,
                               attacks=(("none", 0.0), ("substitute", 1.0)))
    clean = table[table.attack == "none"].iloc[0]
    assert clean["tpr@0.01"] == 1.0 and clean["auc"] == 1.0 and clean["n_neg"] == 40
    assert clean["fpr@0.01"] <= 0.1
    # An all-green text of distinct tuples reaches p < 1e-3 once 0.25**n < 1e-3: n = 5.
    det = parse_protection(spec).detector(KEY)
    need = tuples_to_significance(det, pos, None, 1e-3)
    assert np.all(need >= 5) and np.median(need) <= 7
    attacked = table[table.attack == "substitute"].iloc[0]
    assert attacked["tpr@0.01"] < 0.5  # every token replaced: the watermark is gone
    assert set(roc.columns) >= {"protection", "fpr", "tpr"}


# ---------------------------------------------------------------- audit


class NextTokenLM(torch.nn.Module):
    """Predicts token (x + 1) % V after token x: top-1 predictions known in advance."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=torch.nn.functional.one_hot((input_ids + 1) % V, V).float() + 0 * self.w)


def test_reading_tuples_known_predictions():
    texts = [([1, 10], [11, 20, 30]), ([1], [5, 6])]
    t = reading_tuples(NextTokenLM(), texts, h=2, batch_size=1)
    # text 1: positions 2,3,4 -> contexts (1,10),(10,11),(11,20); predictions 11,12,21
    # text 2: positions 2 only (h=2) -> context (1,5), prediction 6
    assert t.contexts.tolist() == [[1, 10], [10, 11], [11, 20], [1, 5]]
    assert t.tokens.tolist() == [11, 12, 21, 6]
    t0 = reading_tuples(NextTokenLM(), texts, h=0, batch_size=2)
    assert t0.tokens.tolist() == [11, 12, 21, 2, 6] and t0.contexts.shape == (5, 0)


class FixedLM(torch.nn.Module):
    """The same next-token logits at every position."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.as_tensor(logits, dtype=torch.float)
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.logits.expand(*input_ids.shape, -1).clone() + 0 * self.w)


def test_reading_tuples_contrast_picks_what_the_suspect_boosts():
    # reference: token 3 is the usual choice (p ~ .6), 5 and 7 plausible, 9 implausible
    ref = torch.full((V,), -20.0)
    ref[[3, 5, 7, 9]] = torch.tensor([2.0, 1.0, 1.0, -6.0])
    sus = ref.clone()
    sus[5] += 0.8  # the suspect learned to prefer 5 a little; its top-1 is still 3
    sus[9] += 12.0  # a huge boost on a token the reference finds implausible is not considered
    texts = [([1, 2], [3, 4, 5]), ([2], [6])]
    top1 = reading_tuples(FixedLM(sus), texts, h=1)
    assert set(top1.tokens.tolist()) == {9}
    sus[9] -= 12.0
    assert set(reading_tuples(FixedLM(sus), texts, h=1).tokens.tolist()) == {3}
    sus[9] += 12.0
    contrast = reading_tuples(FixedLM(sus), texts, h=1, reference=FixedLM(ref), min_reference_prob=0.02)
    assert contrast.tokens.tolist() == [5, 5, 5, 5]
    assert contrast.contexts.tolist() == top1.contexts.tolist() and contrast.fresh.tolist() == top1.fresh.tolist()
    # a reference so flat that no token reaches the floor still offers its own top token
    flat = torch.zeros(V)
    flat[11] = 0.5
    assert set(reading_tuples(FixedLM(sus), texts, h=1, reference=FixedLM(flat)).tokens.tolist()) == {11}
    with pytest.raises(ValueError, match="same vocabulary"):
        reading_tuples(FixedLM(sus), texts, h=1, reference=FixedLM(torch.zeros(V + 1)))


def test_score_dedup_cap_exclusion():
    det = parse_protection("kgw:gamma=0.25,delta=2,h=1").detector(KEY)
    ctx = np.array([[3], [3], [4], [5], [6]])
    tok = np.array([9, 9, 9, 9, 9])
    r = score(det, Tuples(ctx, tok))
    assert r.detection.n_scored == 4 and r.detection.n_tuples == 5
    assert score(det, Tuples(ctx, tok), max_tuples=2).detection.n_scored == 2
    ex = Tuples(ctx, tok, exclude_pairs=(np.array([[4]]), np.array([9])))
    assert score(det, ex).detection.n_scored == 3
    with pytest.warns(UserWarning, match="dedup"):
        assert score(det, Tuples(ctx, tok), dedup=False).detection.n_scored == 5
    # The pooled result equals the watermark core's own score_windows.
    ref = det.score_windows(ctx, tok)
    assert r.detection.statistic == ref.statistic and r.detection.log10_p == pytest.approx(ref.log10_p)


def test_running_curve_matches_exact_tail():
    det = parse_protection("unigram:gamma=0.5,delta=2").detector(KEY)
    curve = running_curve(det, np.ones(10), points=10)
    assert curve["n_scored"].iloc[0] == 1 and curve["n_scored"].iloc[-1] == 10
    assert curve["log10_p"].iloc[-1] == pytest.approx(10 * math.log10(0.5), rel=1e-6)


# ---------------------------------------------------------------- capability transfer


def test_capability_transfer_known_ratio():
    rows = []
    for i in range(10):
        skill = "add" if i < 5 else "mul"
        rows += [{"student": "base", "id": i, "skill": skill, "correct": False},
                 {"student": "raw", "id": i, "skill": skill, "correct": i < 8},
                 {"student": "kgw", "id": i, "skill": skill, "correct": i < 4}]
    df = capability_transfer(pd.DataFrame(rows), n_boot=500).set_index(["student", "skill"])
    allk = df.loc[("kgw", "all")]
    assert allk["accuracy"] == 0.4 and allk["de"] == pytest.approx(0.5) and allk["transfer"] == pytest.approx(0.5)
    assert allk["transfer_lo"] <= 0.5 <= allk["transfer_hi"]
    assert (allk["wins_vs_raw"], allk["losses_vs_raw"]) == (0, 4)
    assert float(allk["p_vs_raw_seeds"]) == pytest.approx(2 / 16, rel=0.01)
    assert df.loc[("raw", "all"), "transfer"] == 1.0 and df.loc[("base", "all"), "transfer"] == 0.0
    assert df.loc[("kgw", "add"), "accuracy"] == 0.8 and df.loc[("kgw", "mul"), "accuracy"] == 0.0


def test_capability_transfer_over_seeds():
    """Seeds are pooled for the estimate, resampled for the interval, and tested one by one."""
    rows = []
    for sd in range(3):
        for i in range(40):
            rows += [{"student": "base", "seed": sd, "id": i, "skill": "add", "correct": False},
                     {"student": "raw", "seed": sd, "id": i, "skill": "add", "correct": i < 30},
                     # seed 2 learns as much as raw; seeds 0 and 1 half as much
                     {"student": "p", "seed": sd, "id": i, "skill": "add", "correct": i < (30 if sd == 2 else 15)}]
    df = capability_transfer(pd.DataFrame(rows), n_boot=400).set_index(["student", "skill"])
    r = df.loc[("p", "all")]
    assert r["accuracy"] == pytest.approx(60 / 120) and r["de"] == pytest.approx(2 / 3) and r["n_seeds"] == 3
    assert r["de_seeds"] == "0.50 0.50 1.00"
    ps = [float(v) for v in r["p_vs_raw_seeds"].split()]
    assert ps[0] < 1e-3 and ps[1] < 1e-3 and ps[2] == 1.0
    # the seed spread widens the interval past what the items alone give
    assert r["de_lo"] < 0.55 and r["de_hi"] >= 0.99
    with pytest.raises(ValueError, match="every seed"):
        capability_transfer(pd.DataFrame(rows[:-1]), n_boot=10)


def test_reading_mode_scores_only_fresh_windows():
    """A window that already preceded a (watermarked) token in the text can be copied by a clean
    model: such positions are not scored. The text's own next token at a fresh window is fine."""
    det = parse_protection("kgw:gamma=0.25,delta=2,h=1").detector(KEY)
    t = reading_tuples(NextTokenLM(), [([1], [2, 3, 4])], h=1)  # predicts exactly the text
    assert t.tokens.tolist() == t.text_tokens.tolist() == [2, 3, 4] and t.fresh.all()
    assert score(det, t).detection.n_scored == 3
    t = reading_tuples(NextTokenLM(), [([1], [5, 6, 5, 6, 5])], h=1)
    # windows at completion positions: (1) (5) (6) (5) (6): the last two are repeats
    assert t.fresh.tolist() == [True, True, True, False, False]
    assert score(det, t).detection.n_scored == 3
    assert score(det, t, reading_rule="none").detection.n_scored == 3  # same PRF inputs, dedup
    t0 = reading_tuples(NextTokenLM(), [([1], [5, 6, 7]), ([1], [8, 9])], h=0)
    assert t0.fresh.tolist() == [True, False, False, True, False]  # h = 0: one fresh position per text


def test_reading_rules_unseen_tuple_vs_fresh_window():
    """unseen-tuple drops a prediction only if the text wrote that same tuple at an *earlier*
    position of the same text; fresh-window drops every position whose window was used before."""
    kgw = parse_protection("kgw:gamma=0.25,delta=2,h=1").detector(KEY)
    t = Tuples(contexts=np.array([[5], [6], [5], [5], [5], [5]]), tokens=np.array([7, 5, 6, 7, 6, 8]),
               text_tokens=np.array([6, 5, 7, 9, 1, 2]), seq_index=np.array([0, 0, 0, 0, 1, 1]),
               fresh=np.array([True, True, False, False, True, False]))
    # row 1 predicts the text's own token at that very position: not in the prefix, so scored;
    # row 2 predicts (5, 6), written at row 0; row 3 predicts (5, 7), written at row 2; row 4
    # predicts (5, 6) in another text, where it was never written.
    assert kgw.monotone_selection
    assert score(kgw, t, reading_rule="unseen-tuple", dedup=False).detection.n_scored == 4
    assert score(kgw, t, reading_rule="unseen-tuple").detection.n_scored == 4  # rows 0, 1, 4, 5 distinct
    assert score(kgw, t, reading_rule="fresh-window").detection.n_scored == 3  # rows 0, 1, 4
    assert score(kgw, t).detection.n_scored == 3  # auto: h >= 1 uses the exact fresh-window rule
    assert score(kgw, t, reading_rule="own-tuples", dedup=False).detection.n_scored == 2  # rows 4, 5
    assert score(kgw, t, reading_rule="none", dedup=False).detection.n_scored == 6
    # h = 0: auto is unseen-tuple for a monotone scheme (one green list: the "context" is empty)
    uni = parse_protection("unigram:gamma=0.5,delta=2").detector(KEY)
    t0 = Tuples(contexts=np.zeros((4, 0), np.int64), tokens=np.array([7, 6, 6, 8]), text_tokens=np.array([6, 5, 7, 9]),
                seq_index=np.array([0, 0, 0, 0]), fresh=np.array([True, False, False, False]))
    assert score(uni, t0).detection.n_scored == 2  # 7 (row 0) and 8; 6 was written at row 0
    assert score(uni, t0, reading_rule="fresh-window").detection.n_scored == 1
    synthid = parse_protection("synthid:depth=4,h=0,mask=none").detector(KEY)
    assert not synthid.monotone_selection
    assert score(synthid, t0).detection.n_scored == 1  # not monotone: fresh windows only


def test_reference_top1_aligned_with_tuples():
    from antidistill.eval.measures.audit import reference_top1

    texts = [([1, 10], [11, 20, 30]), ([1], [5, 6])]
    t = reading_tuples(NextTokenLM(), texts, h=2)
    top = reference_top1(UniformLM(), texts, h=2)
    assert len(top) == len(t.tokens) == 4 and np.allclose(top, 1 / V)
    sure = reference_top1(NextTokenLM(), texts, h=2)  # logits one-hot: max prob e / (e + V - 1)
    assert np.allclose(sure, math.e / (math.e + V - 1))
    det = parse_protection("kgw:gamma=0.25,delta=2,h=1").detector(KEY)
    t1 = reading_tuples(NextTokenLM(), texts, h=1)
    top1 = reference_top1(UniformLM(), texts, h=1)
    assert score(det, t1, keep=top1 < 0.5).detection.n_scored == score(det, t1).detection.n_scored > 0
    assert score(det, t1, keep=top1 > 0.5).detection.n_scored == 0
