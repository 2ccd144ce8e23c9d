"""Cache keys keep their meaning: the folders of the smoke presets' artifacts, as the code before the
experiment core (main at c729238) named them. A changed inputs dict, seed offset or version would
silently recompute (and orphan) every cached corpus, student and evaluation; these are pure path
computations (nothing is built, no teacher is trained). The students' keys (and what hangs off a
student) changed on purpose with issue 21: length-grouped batches (`students.group_by_length`) give
other weights, and an old folder must not pass for a new one."""
from pathlib import Path

from antidistill.eval.core.config import overlay
from antidistill.eval.experiment import measures
from antidistill.eval.experiment.config import SMOKE, RunConfig, preset_config
from antidistill.eval.experiment.evidence import Evidence
from antidistill.eval.experiment.evidence_config import evidence_config
from antidistill.eval.experiment.lab import Lab

KGW4 = "kgw:gamma=0.25,delta=4,h=1,hash=left"


def test_run_smoke_cache_paths_are_the_old_ones(tmp_path):
    lab = Lab(preset_config("smoke"), tmp_path, quiet=True)
    none, kgw = lab.protections["none"], lab.protections[KGW4]
    assert lab.teacher_id == "demo-a251731173d75f25" and lab.key.fingerprint == "dc87b18dfad74b28"
    assert lab.corpus(none).name == "65fddbd24a68f70d" and lab.corpus(kgw).name == "f7f6e3db45f63401"
    assert lab.corpus(kgw, "audit").name == "90e75a705ec8109e"
    raw = [lab.student(lab.corpus(none), s).name for s in lab.seeds.training]
    marked = [lab.student(lab.corpus(kgw), s).name for s in lab.seeds.training]
    assert raw == ["c43c5ac18f6c280f", "191c9b78784b6fa2"] and marked == ["1252e6156e971765", "8a5099faf56624b8"]
    corpora = {"none": lab.corpus(none), KGW4: lab.corpus(kgw)}
    path = lab.store.path
    assert path("quality", {"corpora": {s: p.name for s, p in corpora.items()}, "reference": lab.teacher_id}).name \
        == "e6b149e0ddeca28e"
    assert path("grades", measures.grade_inputs(lab, None, 1)).name == "bd260601989029ee"
    assert path("grades", measures.grade_inputs(lab, Path(marked[1]), 1)).name == "afa9863c21266250"
    assert path("audits", measures.audit_inputs(lab, kgw, Path(marked[0]), "reading")).name == "81ded6052f1ecd3a"
    assert path("audits", measures.audit_inputs(lab, kgw, Path(raw[1]), "reading")).name == "3a6a6ec0fac128ff"


def test_the_seed_offsets_keep_their_values():
    seeds = overlay(RunConfig, SMOKE, {"seed": 10}).seeds
    assert (seeds.corpus, seeds.audit_texts, seeds.clean, seeds.decode_attack, seeds.audit_generation) == \
        (10, 1010, 787, 13, 17)
    assert seeds.training == [10, 11]


def test_evidence_smoke_cache_paths_are_the_old_ones(tmp_path):
    ev = Evidence(evidence_config("evidence-smoke"), tmp_path / "out", cache_dir=tmp_path, quiet=True)
    lab = ev.lab
    kgw_student = lab.student(ev.source(KGW4), 0)
    assert kgw_student.name == "497d68ac718159fd"
    assert ev.mixed(KGW4, 0.5)[0].name == "84658a848ebff0b0"
    assert [lab.student(ev.mixed(KGW4, 0.5)[0], s).name for s in (0, 1)] == ["08e71bc04e126537", "17f6e39f7ac39ba5"]
    assert ev.attacked(KGW4, "canonicalize", 1)[0].name == "52b3f73010869967"  # seed-free: shared by every seed
    assert ev.attacked(KGW4, "reweight:eps=0.001,beta=1,holdout=8", 0)[0].name == "9e59a1af3470ea67"
    assert ev.attacked("temperature:t=2", "reweight:eps=0.001,beta=1,holdout=8,weights=rank", 1)[0].name \
        == "01fa471db57ef11a"
    assert lab.store.path("clean-corpora", lab.clean_corpus_inputs(*ev.clean_records(), take=64)).name \
        == "7fb593d7fd2dd6fc"
    assert ev.finetuned(kgw_student, 10, 0)[0].name == "29409a2e27193b06"
    raw = lab.student(ev.source("none"), 0)
    assert raw.name == "4210ddcd41d82a1f"
    assert lab.store.path("evidence-audits", measures.evidence_audit_inputs(lab, KGW4, raw, "reading")).name \
        == "7363c64ef7d3090e"
    assert lab.store.path("evidence-key-nulls", measures.key_null_inputs(lab, KGW4, raw, "reading", 200)).name \
        == "6a31d63e345df96a"
