import pytest

from antidistill.students.tasks.registry import DemoTask, accuracy_by_skill
from antidistill.students.tasks.suite import (SKILLS, TaskConfig, grade, make_split,
                                              parse_answer, render)
from antidistill.watermark.errors import UserError


def _solve(ex):
    """An independent solver working from the canonical problem, not from the rendered trace."""
    problem = eval(ex.problem.split(":", 1)[1])  # repr of a tuple of ints, written by the suite itself
    if ex.skill == "add":
        return str(problem[0] + problem[1])
    if ex.skill == "mul":
        return str(problem[0] * problem[1])
    if ex.skill == "sort":
        return " ".join(map(str, sorted(problem)))
    t, xs = problem
    return str(xs.count(t))


def test_same_seed_same_examples_other_seed_others():
    a, b = make_split("train", 80, seed=3), make_split("train", 80, seed=3)
    assert a == b
    c = make_split("train", 80, seed=4)
    assert [e.text for e in a] != [e.text for e in c]


def test_larger_n_extends_smaller_per_skill():
    small, big = make_split("test", 20), make_split("test", 60)
    for skill in SKILLS:
        s = [e for e in small if e.skill == skill]
        assert s == [e for e in big if e.skill == skill][:len(s)]


def test_skills_balanced_and_answers_correct():
    exs = make_split("distill", 400)
    assert {s: sum(e.skill == s for e in exs) for s in SKILLS} == {s: 100 for s in SKILLS}
    for ex in exs:
        assert ex.answer == _solve(ex)
        assert ex.completion.endswith(f"Answer: {ex.answer}")
        assert ex.prompt.endswith("\n") and grade(ex, ex.completion)


def test_splits_are_disjoint_by_problem():
    sets = {s: {e.problem for e in make_split(s, 800)} for s in ("train", "distill", "test")}
    assert not sets["train"] & sets["test"]
    assert not sets["train"] & sets["distill"]
    assert not sets["distill"] & sets["test"]
    # and within a split problems are unique
    assert len(sets["test"]) == 800


def test_wording_varies_but_answer_does_not():
    import random

    problem = (482, 139)
    outs = {render("add", problem, random.Random(i)) for i in range(50)}
    assert len({o[1] for o in outs}) > 20  # many different traces
    assert {o[2] for o in outs} == {"621"}
    # every step line carries its own choice of words
    first_lines = {o[1].splitlines()[0].split(" 2 + 9")[0] for o in outs}
    assert len(first_lines) >= 3


def test_unique_false_allows_more_than_the_space():
    cfg = TaskConfig(mul_digits=(1, 1))  # 9 x 8 problems, ~43 in train
    with pytest.raises(UserError, match="cannot draw more unique"):
        make_split("train", 100, skills=["mul"], config=cfg)
    exs = make_split("train", 100, skills=["mul"], config=cfg, unique=False)
    assert len(exs) == 100 and all(grade(e, e.completion) for e in exs)
    test_problems = {e.problem for e in make_split("test", 3, skills=["mul"], config=cfg)}
    assert not test_problems & {e.problem for e in exs}


def test_mul_supplies_20000_distillation_problems():
    # mul has the smallest problem space of the four skills (the others hold far more)
    exs = make_split("distill", 20_000, skills=["mul"])
    assert len({e.problem for e in exs}) == 20_000


@pytest.mark.parametrize("completion,expected", [
    ("steps\nAnswer: 621", "621"),
    ("Answer: 1\nmore\nAnswer: 621", "621"),  # the last answer line counts
    ("Answer:621.", "621"),
    ("Answer: 0621", "621"),
    ("Answer:   621  ", "621"),
    ("no answer line", None),
    ("Answer: ", None),
    ("Answer: six hundred", None),
    ("Answer: 621 apples", None),
    ("Answer: -5", None),
    ("answer: 621", None),  # the marker is exact
])
def test_parse_answer_numeric(completion, expected):
    assert parse_answer(completion, "add") == expected


def test_grade_sort_and_malformed():
    ex = next(e for e in make_split("test", 8) if e.skill == "sort")
    assert grade(ex, ex.completion)
    assert grade(ex, "Answer: " + ", ".join(ex.answer.split()))  # commas are separators
    assert not grade(ex, "Answer: " + " ".join(reversed(ex.answer.split())) + " 99")
    assert not grade(ex, "Answer: [" + ex.answer + "]")
    assert not grade(ex, ex.completion.replace("Answer:", "Result:"))


def test_accuracy_by_skill():
    exs = make_split("test", 8)
    comps = [e.completion if i % 2 == 0 else "Answer: x" for i, e in enumerate(exs)]
    acc = accuracy_by_skill(DemoTask(), exs, comps)
    assert acc["all"] == 0.5
    assert acc["add"] == 1.0 and acc["mul"] == 0.0
    with pytest.raises(ValueError):
        accuracy_by_skill(DemoTask(), exs, comps[:-1])


def test_bad_inputs_are_user_errors():
    with pytest.raises(UserError, match="unknown split"):
        make_split("dev", 4)
    with pytest.raises(UserError, match="unknown skill"):
        make_split("train", 4, skills=["divide"])
