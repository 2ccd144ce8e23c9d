"""The `natural[:gsm=F]` task: the shipped instructions (ungraded) mixed with gsm_symbolic problems.

Fast (no model). Tests that draw gsm problems need reasoning-gym and are skipped without it."""
import pytest

from antidistill.students.tasks.base import FEATURES, Task
from antidistill.students.tasks.natural import NaturalTask
from antidistill.students.tasks.prompts import instructions
from antidistill.students.tasks.registry import describe, parse_task
from antidistill.watermark.errors import UserError


def gym():
    pytest.importorskip("reasoning_gym")


def test_spec_parse_and_canonical():
    assert "natural[:gsm=F]" in describe()
    assert isinstance(parse_task("natural:gsm=0"), NaturalTask)
    assert parse_task("natural:gsm=0").spec == "natural:gsm=0"
    assert parse_task("natural:gsm=0.0").spec == "natural:gsm=0"
    gym()
    assert parse_task("natural").spec == "natural" and parse_task("natural").gsm == 0.25
    assert parse_task("natural:gsm=0.25").spec == "natural"
    assert parse_task("natural:gsm=.5").spec == "natural:gsm=0.5"
    assert parse_task("natural:gsm=1").spec == "natural:gsm=1"


@pytest.mark.parametrize("spec,match", [
    ("natural:gsm=2", "not a share in"), ("natural:gsm=nan", "not a share in"), ("natural:gsm=-0.1", "not a share in"),
    ("natural:gsm=x", "not a share in"), ("natural:foo=1", "unknown parameter"), ("natural:gsm", "not name=value"),
])
def test_bad_parameters_are_one_line_errors(spec, match):
    with pytest.raises(UserError, match=match) as err:
        parse_task(spec)
    assert "\n" not in str(err.value)


def test_instructions_only_draws_and_graded_flags():
    task = parse_task("natural:gsm=0")
    a, b = task.examples("distill", 50, seed=3), task.examples("distill", 50, seed=3)
    assert a == b and task.examples("distill", 20, seed=3) == a[:20]
    assert [e.id for e in a] != [e.id for e in task.examples("distill", 50, seed=4)]
    assert len({e.id for e in a}) == 50
    texts = {r["prompt"] for r in instructions()}
    assert all(e.prompt in texts and e.skill == "instruction" and e.answer == "" and e.completion == "" for e in a)
    assert task.examples("train", 50, seed=3) == [e.__class__(**{**e.__dict__, "split": "train"}) for e in a]
    assert not any(task.graded(e) for e in a) and not task.graded({"id": a[0].id, "skill": "instruction", "answer": ""})
    with pytest.raises(UserError, match="ungraded"):
        task.score(a[0], "Answer: 1")
    assert Task.graded(task, a[0]) is True  # the base class: every example has a reference


def test_unique_overflow_and_cycling():
    task = parse_task("natural:gsm=0")
    assert len({e.id for e in task.examples("distill", 300)}) == 300
    with pytest.raises(UserError, match="needs 301 unique instructions; the instruction set has 300"):
        task.examples("distill", 301)
    cycled = task.examples("distill", 650, unique=False)
    assert [e.id for e in cycled[300:600]] == [e.id for e in cycled[:300]]


def test_zero_share_has_nothing_to_grade():
    task = parse_task("natural:gsm=0")
    assert task.examples("test", 0) == []
    with pytest.raises(UserError, match="nothing to grade; set eval.transfer = false"):
        task.examples("test", 5)


def test_no_trace_feature_applies():
    task = parse_task("natural:gsm=0")
    for feature in FEATURES:
        reason = task.supports(feature)
        assert reason and "\n" not in reason


def test_key_names_the_instruction_file():
    assert "@instructions=" in parse_task("natural:gsm=0").key
    assert "reasoning-gym" not in parse_task("natural:gsm=0").key
    gym()
    assert "reasoning-gym=" in parse_task("natural").key


def test_gsm_share_and_determinism():
    gym()
    for share, n in ((0.25, 40), (0.5, 13), (1.0, 7), (0.1, 30)):
        task = NaturalTask(share)
        draw = task.examples("distill", n, seed=1)
        assert sum(task.graded(e) for e in draw) == round(share * n)
        assert draw == task.examples("distill", n, seed=1)
        assert draw[:n // 2] == task.examples("distill", n // 2, seed=1)  # a larger n extends a smaller one
    task = parse_task("natural")
    assert [e.id for e in task.examples("distill", 20, seed=1)] != [e.id for e in task.examples("distill", 20, seed=2)]


def test_splits_are_disjoint():
    gym()
    task = parse_task("natural:gsm=0.5")
    test = task.examples("test", 60)
    assert all(task.graded(e) and e.skill != "instruction" for e in test)  # the test split: gsm only
    held_out = {e.problem for e in test}
    for seed in range(3):
        for split in ("distill", "train"):
            drawn = task.examples(split, 80, seed=seed)
            assert not held_out & {e.problem for e in drawn}
    texts = {r["prompt"] for r in instructions()}
    assert not any(e.prompt in texts for e in test)


def test_gsm_scoring():
    gym()
    task = parse_task("natural")
    ex = next(e for e in task.examples("distill", 8, seed=0) if task.graded(e))
    assert task.score(ex, f"work\nAnswer: {ex.answer}") == 1.0 and task.correct(ex, f"Answer: {ex.answer}")
    # a wrong number: not correct (gsm_symbolic's own score_answer gives 0.01 for a parseable wrong answer)
    assert task.score(ex, "Answer: -123456789") < 0.1 and not task.correct(ex, "Answer: -123456789")
    assert task.score(ex, "no idea") == 0.0  # no answer at all
    record = {"id": ex.id, "skill": ex.skill, "answer": ex.answer}
    assert task.graded(record) and task.score(record, f"Answer: {ex.answer}") == 1.0
    t = task.examples("test", 2)[0]
    assert task.score(t, f"Answer: {t.answer}") == 1.0
