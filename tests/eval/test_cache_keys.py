"""Cache keys keep their meaning: the folders of the smoke presets' artifacts, as the code before the
experiment core (main at c729238) named them. A changed inputs dict, seed offset or version would
silently recompute (and orphan) every cached corpus, student and evaluation; these are pure path
computations (nothing is built, no teacher is trained)."""
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
    assert raw == ["e03c02765a06a356", "93b59fe5d4a4b16a"] and marked == ["792b9e8b9fbb990f", "a95fa9672695010e"]
    corpora = {"none": lab.corpus(none), KGW4: lab.corpus(kgw)}
    path = lab.store.path
    assert path("quality", {"corpora": {s: p.name for s, p in corpora.items()}, "reference": lab.teacher_id}).name \
        == "e6b149e0ddeca28e"
    assert path("grades", measures.grade_inputs(lab, None, 1)).name == "bd260601989029ee"
    assert path("grades", measures.grade_inputs(lab, Path(marked[1]), 1)).name == "d3c91c7c025f5f7d"
    assert path("audits", measures.audit_inputs(lab, kgw, Path(marked[0]), "reading")).name == "7eb4bfb561dd5c4c"
    assert path("audits", measures.audit_inputs(lab, kgw, Path(raw[1]), "reading")).name == "08a79f3b1222cf78"


def test_the_seed_offsets_keep_their_values():
    seeds = overlay(RunConfig, SMOKE, {"seed": 10}).seeds
    assert (seeds.corpus, seeds.audit_texts, seeds.clean, seeds.decode_attack, seeds.audit_generation) == \
        (10, 1010, 787, 13, 17)
    assert seeds.training == [10, 11]


def test_evidence_smoke_cache_paths_are_the_old_ones(tmp_path):
    ev = Evidence(evidence_config("evidence-smoke"), tmp_path / "out", cache_dir=tmp_path, quiet=True)
    lab = ev.lab
    kgw_student = lab.student(ev.source(KGW4), 0)
    assert kgw_student.name == "3b5c367bce17adee"
    assert ev.mixed(KGW4, 0.5)[0].name == "84658a848ebff0b0"
    assert [lab.student(ev.mixed(KGW4, 0.5)[0], s).name for s in (0, 1)] == ["b4576ae27aebe9ee", "65af3ba739d22086"]
    assert ev.attacked(KGW4, "canonicalize", 1)[0].name == "52b3f73010869967"  # seed-free: shared by every seed
    assert ev.attacked(KGW4, "reweight:eps=0.001,beta=1,holdout=8", 0)[0].name == "940bb2ad4a9ac1e3"
    assert ev.attacked("temperature:t=2", "reweight:eps=0.001,beta=1,holdout=8,weights=rank", 1)[0].name \
        == "729be6a4c99fe5c4"
    assert lab.store.path("clean-corpora", lab.clean_corpus_inputs(*ev.clean_records(), take=64)).name \
        == "7fb593d7fd2dd6fc"
    assert ev.finetuned(kgw_student, 10, 0)[0].name == "ed1a7954e778b845"
    raw = lab.student(ev.source("none"), 0)
    assert raw.name == "505f8ec63d890e76"
    assert lab.store.path("evidence-audits", measures.evidence_audit_inputs(lab, KGW4, raw, "reading")).name \
        == "097ac76c7c553d80"
    assert lab.store.path("evidence-key-nulls", measures.key_null_inputs(lab, KGW4, raw, "reading", 200)).name \
        == "3d10022a06b8b7e1"


def test_length_grouped_students_get_their_own_keys(tmp_path):
    """Off (the default) leaves the keys above as they were; on, a student is another computation."""
    import dataclasses

    cfg = preset_config("smoke")
    grouped = dataclasses.replace(cfg, students=dataclasses.replace(cfg.students, group_by_length=True))
    lab, lab_g = Lab(cfg, tmp_path, quiet=True), Lab(grouped, tmp_path, quiet=True)
    corpus = lab.corpus(lab.protections["none"])
    assert lab.student(corpus, 0).name == "e03c02765a06a356" and lab_g.student(corpus, 0).name != "e03c02765a06a356"
