import json
import time

import pytest
import torch

from antidistill.students.cache import config_hash
from antidistill.students.models.teacher import TeacherConfig, demo_teacher, grade_model, teacher_dir, train_teacher
from antidistill.students.tasks.suite import make_split
from antidistill.watermark.errors import UserError

from .conftest import FAST_TEACHER

MICRO = TeacherConfig(steps=6, n_train=64, batch_size=8, n_test=8, max_new_tokens=8, warmup=2)


def test_training_is_deterministic_under_its_seed(cache_dir):
    a, _, card_a = train_teacher(MICRO, cache_dir=cache_dir, progress=False)
    b, _, _ = train_teacher(MICRO, cache_dir=cache_dir, progress=False)
    c, _, _ = train_teacher(TeacherConfig(**{**MICRO.__dict__, "seed": 1}), cache_dir=cache_dir, progress=False)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert set(card_a["accuracy"]) == {"add", "mul", "sort", "count", "all"}


def test_cached_by_config_hash(fast_teacher, cache_dir):
    target = teacher_dir(FAST_TEACHER, cache_dir)
    assert target.name == f"demo-{config_hash(FAST_TEACHER.as_dict())}"
    card = json.loads((target / "teacher_card.json").read_text())
    assert card["config"] == json.loads(json.dumps(FAST_TEACHER.as_dict()))
    t0 = time.perf_counter()
    model, tok = demo_teacher(cache_dir=cache_dir, config=FAST_TEACHER, progress=False)
    assert time.perf_counter() - t0 < 30  # loaded, not retrained
    first = fast_teacher[0].state_dict()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in first.items())
    # the short recipe already writes the answer line in the right format for some problems
    acc = grade_model(model, tok, make_split("test", 40), max_new_tokens=96)
    assert 0.0 <= acc["all"] <= 1.0


def test_config_from_json_like_dicts():
    cfg = TeacherConfig(tasks={"sort_len": [3, 5]})
    assert cfg.tasks.sort_len == (3, 5)
    assert config_hash(TeacherConfig(tasks={}).as_dict()) == config_hash(TeacherConfig().as_dict())
    # a preset trains from scratch; any other name must be a pretrained model to fine-tune
    with pytest.raises(UserError, match="demo teacher's preset .*'giant' is not a preset"):
        TeacherConfig(preset="giant")
    with pytest.raises(UserError, match="on itself"):
        TeacherConfig(preset="demo")


def test_a_pretrained_model_is_fine_tuned_into_the_teacher_with_its_own_tokenizer(cache_dir, tmp_path):
    """`preset` naming a saved model starts from its weights and keeps its tokenizer (the
    pretrained-teacher presets fine-tune SmolLM2 this way); a run config then knows whose
    tokenizer its teacher speaks."""
    from antidistill.eval.experiment.config import RunConfig, StudentsSection, TeacherSection
    from antidistill.students.models.presets import build_model
    from antidistill.students.models.tokenizer import tokenizer_fingerprint, train_tokenizer

    tok = train_tokenizer([f"What is {i} + {i + 1}? Answer: {2 * i + 1}" for i in range(300)], vocab_size=300)
    start, _ = build_model("tiny", seed=9, tokenizer=tok)
    start.save_pretrained(tmp_path / "pre")
    tok.save_pretrained(tmp_path / "pre")
    cfg = TeacherConfig(**{**MICRO.__dict__, "preset": str(tmp_path / "pre"), "lr": 1e-3})
    model, got, card = train_teacher(cfg, cache_dir=cache_dir, progress=False)
    assert tokenizer_fingerprint(got) == tokenizer_fingerprint(tok)
    moved = [not torch.equal(v, start.state_dict()[k]) for k, v in model.state_dict().items()]
    assert any(moved) and 0.0 <= card["accuracy"]["all"] <= 1.0
    run = RunConfig(teacher=TeacherSection(model="demo", demo={"preset": str(tmp_path / "pre")}),
                    students=StudentsSection(preset="tiny:tokenizer=teacher"))
    assert run.teacher_tokenizer == str(tmp_path / "pre") and run.student_model == f"tiny:tokenizer={tmp_path / 'pre'}"
    assert RunConfig().teacher_tokenizer == "project"
