"""`antidistill evidence`: config checks, the E1/E2/E4 tables from known inputs, and a tiny end-to-end run."""
import math

import numpy as np
import pandas as pd
import pytest

from antidistill.eval.cli import main
from antidistill.eval.experiment.evidence import evidence_config
from antidistill.eval.experiment.results import E1Results, E2Results, E4Results
from antidistill.eval.experiment.evidence_report import (e1_tables, e2_tables, e4_tables, key_null_table,
                                                            seed_item_ci, won_back_table)
from antidistill.watermark.errors import UserError


def test_seed_item_ci_covers_the_mean_and_collapses_without_variance():
    rng = np.random.default_rng(0)
    m = rng.random((3, 200)) < 0.4
    lo, hi = seed_item_ci(m)
    assert lo < m.mean() < hi and hi - lo < 0.2
    assert seed_item_ci(np.ones((2, 10))) == (1.0, 1.0)


def test_config_checks():
    cfg = evidence_config("evidence")
    assert cfg.run.alpha == 1e-4 and cfg.run.name == "evidence" and cfg.run.eval.audit_modes
    with pytest.raises(UserError, match="valid presets"):
        evidence_config("nope")
    with pytest.raises(UserError, match="not among run.protections"):
        evidence_config("evidence", {"e1": {"protection": "unigram:gamma=0.5,delta=2"}})
    with pytest.raises(UserError, match="unknown attack"):
        evidence_config("evidence", {"e4": {"corpus_attacks": ["shuffle"]}})
    with pytest.raises(UserError, match="unknown config key"):
        evidence_config("evidence", {"e2": {"stepz": [1]}})
    # wrong types get one line naming the key, never a traceback
    for over, where in [({"e4": {"denying": {"protections": "ads:lam=3"}}}, "e4.denying.protections"),
                        ({"e4": {"denying": {"attacks": None}}}, "e4.denying.attacks"),
                        ({"e4": {"denying": {"attacks": ["finetune"]}}}, "e4.denying.attacks"),
                        ({"e1": {"rhos": ["a"]}}, "e1.rhos"), ({"e1": {"rhos": "0.5"}}, "e1.rhos"),
                        ({"e1": {"null_keys": float("inf")}}, "e1.null_keys"), ({"e2": {"steps": [-1]}}, "e2.steps"),
                        ({"seeds": [0, 0]}, "seeds"), ({"seeds": [True]}, "seeds")]:
        with pytest.raises(UserError, match=where.replace(".", r"\.")):
            evidence_config("evidence", over)


def _audit_rows(log10_p, key_kind="key", dedup=True, **tags):
    return {"key_kind": key_kind, "dedup": dedup, "log10_p": log10_p, "n_scored": 100, **tags}


def test_e2_reports_after_how_many_steps_the_signal_fades():
    rows, grades = [], []
    for steps, lp in ((0, -9.0), (50, -5.0), (200, -1.0)):
        rows.append(_audit_rows(lp, protection="kgw", mode="reading", steps=steps))
        rows.append(_audit_rows(-0.3, "wrong key", protection="kgw", mode="reading", steps=steps))
        grades += [{"protection": "kgw", "steps": steps, "id": i, "correct": i < 5} for i in range(10)]
    t = e2_tables(E2Results(audits=pd.DataFrame(rows), grades=pd.DataFrame(grades)), alpha=1e-4)
    fades = t["fades"].iloc[0]
    assert fades["learned (0 steps)"] and fades["not significant after steps"] == 200
    assert list(t["finetune"].accuracy) == [0.5, 0.5, 0.5]


def test_e1_nulls_are_uniform_with_dedup_and_counted_without():
    rng = np.random.default_rng(1)
    rows = [_audit_rows(math.log10(p), "wrong key", True, rho=0.0, mode="reading") for p in rng.random(400)]
    rows += [_audit_rows(-8.0, "wrong key", False, rho=0.0, mode="reading") for _ in range(400)]
    rows += [_audit_rows(-12.0, "key", True, rho=1.0, mode="reading")]
    t = e1_tables(E1Results(grades=pd.DataFrame(), audits=pd.DataFrame(rows)), alpha=1e-4)
    on, off = t["nulls"].set_index("dedup").loc["on"], t["nulls"].set_index("dedup").loc["off"]
    assert on.ks_uniform_p > 0.01 and on.fraction_below_alpha < 0.01
    assert off.fraction_below_alpha == 1.0
    assert t["rho"].set_index("rho").loc[1.0, "significant_seeds"] == "1/1"


def test_key_null_table_counts_keys_below_each_level_with_an_exact_upper_bound():
    p = (np.arange(1000) + 0.5) / 1000  # perfectly uniform p-values over 1000 keys
    kn = pd.DataFrame({"log10_p": np.log10(p), "mode": "reading", "seed": 0})
    row = key_null_table(kn, alpha=1e-4).iloc[0]
    assert row["keys"] == 1000 and row["below 0.01"].startswith("10 (0.01;")
    assert row["below 0.0001"].startswith("0 (0;") and row["below 0.05"].startswith("50 ")
    assert float(row["below 0.01"].split("<= ")[1].rstrip(")")) > 0.01  # the bound lies above the share


def test_e4_puts_capability_beside_evidence():
    audits = pd.DataFrame([_audit_rows(-10.0, attack="none", mode="reading", seed=0),
                           _audit_rows(-1.0, attack="canonicalize", mode="reading", seed=0),
                           _audit_rows(-0.5, "wrong key", attack="canonicalize", mode="reading", seed=0)])
    grades = pd.DataFrame([{"attack": a, "seed": 0, "id": i, "correct": i < k}
                           for a, k in (("none", 6), ("canonicalize", 5)) for i in range(10)])
    t = e4_tables(E4Results(audits=audits, grades=grades), alpha=1e-4).set_index("attack")
    assert t.loc["none", "accuracy"] == 0.6 and t.loc["canonicalize", "reading_log10_p"] == -1.0
    assert t.loc["canonicalize", "reading_significant"] == "0/1" and t.loc["canonicalize", "reading_null_fp"] == "0/1"


def test_won_back_is_the_share_of_lost_transfer_regained():
    """raw 80%, protected 40%, filter 60% and reweight 40% of the same 10 items in two seeds: filter
    wins back half of what the protection took, reweight nothing."""
    rows = []
    for seed in (0, 1):
        for spec, attack, k in (("none", "none", 8), ("ads", "none", 4), ("ads", "filter", 6), ("ads", "reweight", 4)):
            rows += [{"protection": spec, "attack": attack, "seed": seed, "id": i, "correct": i < k, "records": 100}
                     for i in range(10)]
    t = won_back_table(pd.DataFrame(rows), n_boot=200).set_index(["protection", "attack"])
    assert t.loc[("ads", "filter"), "won_back"] == pytest.approx(0.5)
    assert t.loc[("ads", "reweight"), "won_back"] == pytest.approx(0.0)
    assert t.loc[("ads", "filter"), "won_back_per_seed"] == "0.50 0.50"
    assert bool(t.loc[("ads", "filter"), "gains_in_every_seed"]) and not bool(t.loc[("ads", "reweight"), "gains_in_every_seed"])
    lo, hi = t.loc[("ads", "filter"), ["won_back_lo", "won_back_hi"]]
    assert lo <= 0.5 <= hi
    assert pd.isna(t.loc[("ads", "none")].get("won_back"))  # the protected student itself has no share


@pytest.mark.slow
def test_tiny_evidence_run_end_to_end(tmp_path, monkeypatch):
    from antidistill.eval.experiment import evidence

    tiny = {
        "seeds": [0], "run": {"students": {"max_steps": 12}, "eval": {"n_test": 8, "audit_texts": 12, "wrong_keys": 2}},
        "e1": {"rhos": [0.0, 1.0]}, "e2": {"steps": [0, 4], "clean_records": 32},
        "e4": {"corpus_attacks": ["canonicalize", "answer-only"],
               "decode_attacks": ["decode:temperature=1,top_p=0.5"]}}
    smoke = evidence.evidence_config  # the CLI resolves its preset through this name
    monkeypatch.setattr(evidence, "evidence_config", lambda preset, *over: smoke("evidence-smoke", tiny, *over))
    out = tmp_path / "ev"
    assert main(["evidence", "--preset", "evidence-smoke", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
                 "--quiet"]) == 0
    for name in ("report.md", "config.json", "run.json", "e1_rho.png", "e1_rho.csv", "e1_nulls.csv", "e1_key_nulls.csv",
                 "e2_finetune.png",
                 "e2_fades.csv", "e4_attacks.png", "e4_attacks.csv"):
        assert (out / name).is_file(), name
    t = pd.read_csv(out / "e4_attacks.csv")
    assert set(t.attack) == {"none (raw teacher)", "none", "canonicalize", "answer-only",
                             "decode:temperature=1,top_p=0.5"}
    report = (out / "report.md").read_text()
    assert "## E1" in report and "wins back" in report
    w = pd.read_csv(out / "e4_won_back.csv")
    rows = {(p, a) for p, a in zip(w.protection, w.attack)}
    assert {("none", "none"), ("temperature:t=2", "none"), ("temperature:t=2", "reweight:eps=0.001,beta=1,holdout=8"),
            ("temperature:t=2", "reweight:eps=0.001,beta=1,holdout=8,weights=rank")} <= rows
    # the tiny teacher's filtered corpus may keep no record at all (then there is no student to grade)
    assert rows - {("temperature:t=2", "filter:by=recompute,k=3")} <= {
        ("none", "none"), ("temperature:t=2", "none"), ("temperature:t=2", "reweight:eps=0.001,beta=1,holdout=8"),
        ("temperature:t=2", "reweight:eps=0.001,beta=1,holdout=8,weights=rank")}
    assert (w.effective_records <= w.records).all()
    assert not list(out.rglob("*.safetensors"))


@pytest.mark.slow
def test_run_config_attacks_reach_corpus_student_and_decoding(tmp_path):
    """`attacks = [...]` in a run config: the corpus is attacked, the weights fine-tuned, the audit decoded
    the attacker's way, and each lands in its own cache entry."""
    import json

    from antidistill.eval.core.config import overlay
    from antidistill.eval.experiment import measures
    from antidistill.eval.experiment.config import SMOKE, RunConfig
    from antidistill.eval.experiment.lab import ready, run_rounds
    from antidistill.eval.experiment.runner import Runner
    from antidistill.students.corpus import read_corpus

    over = {"attacks": ["canonicalize", "finetune:steps=3,lr=0.0003,batch_size=8", "decode:temperature=1,top_p=0.5"],
            "corpus": {"n_prompts": 32}, "students": {"max_steps": 6},
            "eval": {"n_test": 8, "audit_texts": 8, "audit_modes": ["generation"], "wrong_keys": 1}}
    r = Runner(overlay(RunConfig, SMOKE, over), tmp_path / "out", cache_dir=tmp_path / "c", quiet=True)
    prot = list(r.lab.protections.values())[1]
    student, jobs = r.lab.attacked_student_jobs(prot, r.lab.seed)
    run_rounds(lambda: ready([r.lab.corpus_job(prot, "train"), *jobs]), r.lab, 1)
    manifest = json.loads((student / "train_manifest.json").read_text())
    assert manifest["max_steps"] == 3 and "clean-corpora" in manifest["corpus"]["path"]  # fine-tuned on clean data
    attacked = next((tmp_path / "c" / "runs" / "attacked-corpora").iterdir())
    c = read_corpus(attacked)
    assert c.manifest["attacks"] == ["canonicalize"] and len(c) == 32
    from antidistill.students.tasks.traces import canonical_trace

    assert all(canonical_trace(r_["skill"], r_["completion"]) == r_["completion"] for r_ in c.records)
    run_rounds(lambda: ready([r.lab.corpus_job(prot, "audit")]), r.lab, 1)
    det, _ = measures.audit(r.lab, prot, "attacked", student, "generation", r.lab.seed)
    assert set(det.key_kind) == {"key", "wrong key"}
    with pytest.raises(UserError, match="corpus attacks first"):
        overlay(RunConfig, SMOKE, over, {"attacks": ["finetune", "canonicalize"]})


@pytest.mark.slow
def test_attacked_students_in_parallel_are_the_sequential_ones(tmp_path):
    """With attacks and students.workers = 2 the runner trains in parallel rounds (first passes for
    reweight, attacked corpora, fine-tunes) into the cache entries attacked_student uses one at a time."""
    from antidistill.eval.core.config import overlay
    from antidistill.eval.core.jobs import Scheduler
    from antidistill.eval.experiment.config import SMOKE, RunConfig
    from antidistill.eval.experiment.lab import ready, run_rounds
    from antidistill.eval.experiment.runner import Runner

    cfg = overlay(RunConfig, SMOKE, {
        "protections": ["none", "kgw:gamma=0.25,delta=4,h=1,hash=left"],
        "attacks": ["reweight:eps=0.001,beta=1,holdout=8", "finetune:steps=2,lr=0.0003,batch_size=8"],
        "corpus": {"n_prompts": 24}, "students": {"max_steps": 3, "seeds": 2, "workers": 2}})
    r = Runner(cfg, tmp_path / "out", cache_dir=tmp_path / "c", quiet=True)
    Scheduler(2, r.log).run(r.corpus_jobs())
    run_rounds(r.student_jobs, r.lab, 2)
    computed = r.log.computed("students")
    assert len([c for c in computed if c.startswith("finetune")]) == 4  # one fine-tune per student
    again = Runner(cfg, tmp_path / "out", cache_dir=tmp_path / "c", quiet=True)
    for p in again.lab.protections.values():
        for sd in again.lab.seeds.training:
            student, jobs = again.lab.attacked_student_jobs(p, sd)
            run_rounds(lambda jobs=jobs: ready(jobs), again.lab, 1)  # one at a time, in this process
            assert student == r.student_chains()[(p.spec, sd)][0]
            assert (student / "model" / "config.json").is_file()
    assert not again.log.computed()  # nothing trained twice
