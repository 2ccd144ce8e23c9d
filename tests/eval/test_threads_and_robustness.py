"""The thread policy (fixed or from the free cores), the robust-conclusion rule of the run report,
and teacher quality's perplexity sample."""
import pandas as pd
import pytest

from antidistill.eval.core import jobs
from antidistill.eval.experiment.report import _conclusions
from antidistill.eval.experiment.results import RunResults
from antidistill.eval.measures.quality import perplexity_sample, teacher_quality


@pytest.mark.parametrize("busy,processes,expect", [(0.0, 1, 2), (0.0, 2, 1), (1.0, 1, 1), (1.0, 2, 1),
                                                   (0.4, 1, 2), (2.0, 1, 1), (3.0, 4, 1)])
def test_threads_from_the_free_cores(monkeypatch, busy, processes, expect):
    monkeypatch.setattr(jobs, "usable_cores", lambda: 2)
    monkeypatch.setattr(jobs, "busy_cores", lambda window=0.0: busy)
    assert jobs.threads_per_process(processes) == expect


def test_a_fixed_thread_count_is_taken_as_given(monkeypatch):
    monkeypatch.setattr(jobs, "busy_cores", lambda window=0.0: pytest.fail("measured although fixed"))
    assert jobs.threads_per_process(2, threads=3) == 3


def test_busy_cores_is_a_share_of_the_machine():
    b = jobs.busy_cores(0.05)
    assert 0.0 <= b <= (jobs.os.cpu_count() or 1) + 1e-9


def test_torch_threads_restores_the_count():
    import torch

    before = torch.get_num_threads()
    with jobs.torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def _transfer(rows):
    cols = ["student", "skill", "accuracy", "acc_lo_99", "acc_hi_99", "de", "de_lo", "de_hi", "de_lo_99", "de_hi_99",
            "acc_seeds", "de_seeds", "p_vs_raw_seeds"]
    return pd.DataFrame([dict(zip(cols, r)) for r in rows])


RAW = ("raw", "all", 0.8, 0.6, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, "0.85 0.70 0.86", "1 1 1", "1 1 1")


def test_a_capability_claim_is_robust_only_when_its_99_interval_excludes_one():
    t = _transfer([RAW,
                   ("trace", "all", 0.3, 0.2, 0.4, 0.4, 0.3, 0.5, 0.25, 0.55, "0.3 0.3 0.3", "0.4 0.4 0.4", "1e-9 1e-9 1e-9"),
                   # 95% excludes 1, 99% does not; significant in 2 of 3 seeds
                   ("temp", "all", 0.7, 0.5, 0.8, 0.85, 0.7, 0.98, 0.65, 1.02, "0.7 0.7 0.7", "0.8 0.8 0.95",
                    "0.001 0.01 0.3"),
                   # no seed significant and the pooled interval includes 1: not listed at all
                   ("kgw", "all", 0.8, 0.6, 0.9, 0.99, 0.8, 1.2, 0.75, 1.25, "0.8 0.8 0.8", "1 1 1", "0.5 0.6 0.7"),
                   # one seed significantly below raw, one above, pooled interval includes 1: one line
                   ("doge", "all", 0.8, 0.6, 0.9, 0.96, 0.76, 1.24, 0.71, 1.32, "0.7 0.8 0.9", "0.8 1.0 1.2",
                    "0.01 0.9 0.02")])
    robust, fragile = _conclusions(RunResults({}, transfer=t), 1e-4)
    assert any(x.startswith("**trace** teaches its student less") and "in 3 of 3 seeds" in x for x in robust)
    assert any(x.startswith("**temp** teaches its student less") and "the 99% does not" in x for x in fragile)
    assert not any("kgw" in x for x in robust + fragile)
    doge = [x for x in robust + fragile if "doge" in x]
    assert doge == [x for x in fragile if "doge" in x] and len(doge) == 1
    assert "less in 1 of 3 seeds and more in 1 of 3 seeds" in doge[0] and "pooled interval includes 1" in doge[0]
    assert any(x.startswith("The raw student learns most") for x in robust)  # 99% lower bound 60% > 50%
    low = _transfer([("raw", "all", 0.6, 0.45, 0.7, 1, 1, 1, 1, 1, "0.6 0.4 0.8", "1 1 1", "1 1 1")])
    assert any(x.startswith("The raw student") for x in _conclusions(RunResults({}, transfer=low), 1e-4)[1])
    assert not any("raw student" in x for x in sum(_conclusions(RunResults({}, transfer=low), 1e-4, demo=False), []))


def test_an_audit_verdict_is_robust_only_with_margin_in_every_seed():
    def audit(student, lps):
        return pd.DataFrame({"protection": "kgw", "student": student, "mode": "reading", "key_kind": "key",
                             "seed": range(len(lps)), "log10_p": [float(v) for v in lps]})

    cases = [(audit("kgw", [-12, -9, -7]), "convicts its own students in every seed", True),
             (audit("kgw", [-12, -5, -7]), "convicts its own students in every seed", False),  # -5: 1 decade past
             (audit("kgw", [-12, -3, -7]), "in 2 of 3 seeds", False),
             (audit("kgw", [-0.3, -1.2, -0.1]), "convicts none of its own students", True),
             (audit("raw", [-0.3, -1.2, -0.1]), "convicts none of the raw students", True),
             (audit("raw", [-0.3, -4.5, -0.1]), "FALSELY convicts", False)]
    for table, words, is_robust in cases:
        robust, fragile = _conclusions(RunResults({}, audit=table), 1e-4)
        assert any(words in x for x in (robust if is_robust else fragile)), (words, robust, fragile)
        assert not any(words in x for x in (fragile if is_robust else robust))


def _records(n, length):
    return [{"id": f"p{i}", "skill": "add", "answer": "1", "completion": "1", "prompt_ids": [1, 2],
             "completion_ids": [3] * length} for i in range(n)]


def test_perplexity_sample_is_the_same_prompts_in_every_corpus():
    recs = _records(50, 3)
    ids = perplexity_sample(recs, 10)
    assert len(ids) == 10 and perplexity_sample(recs, 10) == ids  # the baseline's draw, reused for every corpus
    assert perplexity_sample(recs, 0) == {r["id"] for r in recs}
    assert perplexity_sample(recs, 500) == {r["id"] for r in recs}


def test_teacher_quality_scores_perplexity_on_the_sample():
    import torch

    from antidistill.students.models.presets import build_model

    torch.manual_seed(0)
    model, tok = build_model("tiny", seed=0)
    q = teacher_quality({"none": _records(40, 4), "temperature:t=1.5": _records(40, 6)}, reference=model, eos_id=tok.eos_token_id,
                        task="demo", perplexity_texts=8)
    assert list(q.perplexity_n) == [8, 8] and (q.perplexity > 0).all()
    full = teacher_quality({"none": _records(40, 4)}, reference=model, eos_id=tok.eos_token_id, task="demo")
    assert list(full.perplexity_n) == [40]
