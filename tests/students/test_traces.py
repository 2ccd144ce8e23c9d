"""The trace countermeasure: reasoning withheld or thinned, answers untouched, clear refusals."""
import re

import pytest

from antidistill.students.protect.generate import generate_corpus

from antidistill.students.corpus import read_corpus
from antidistill.students.tasks.suite import SKILLS, make_split, parse_answer
from antidistill.students.tasks.traces import thin_trace
from antidistill.watermark import UserError


@pytest.mark.parametrize("skill", SKILLS)
def test_every_step_of_the_suite_parses_and_the_answer_survives(skill):
    for ex in make_split("distill", 100, seed=1, skills=[skill]):
        results, share, ok = thin_trace(ex.completion, skill, "results")
        assert ok and parse_answer(results, skill) == ex.answer
        steps = ex.completion.split("\n")[:-1]
        assert len(results.split("\n")) == len(steps) + 1  # no step withheld as unparseable
        if skill == "sort":  # a sorting step is its own result
            assert results == ex.completion and share == 1.0
        else:
            assert 0 < share < 1
            assert not any(op in line for line in results.split("\n") for op in (" + ", " x "))
        answer, share, ok = thin_trace(ex.completion, skill, "answer")
        assert ok and share == 0.0 and answer == ex.completion.split("\n")[-1]


def test_unknown_lines_are_withheld_and_no_answer_shows_nothing():
    text = "Ones: 3 + 4 = 7, write 7.\nI think so.\nAnswer: 7"
    assert thin_trace(text, "add", "results")[0] == "Ones: 7, write 7.\nAnswer: 7"
    assert thin_trace("Ones: 3 + 4 = 7, write 7.", "add", "results") == ("", 0.0, False)


def test_trace_corpus_is_rendered_and_retokenized(fast_teacher, tmp_path):
    model, tok = fast_teacher
    m = generate_corpus((model, tok), tmp_path / "c", protection="trace:keep=results", prompts=8,
                        max_new_tokens=96, progress=False, teacher_name="fast")
    assert m["protection"] == "trace:keep=results"
    for r in read_corpus(tmp_path / "c").records:
        assert tok.decode(r["completion_ids"]) == r["completion"]
        assert 0 <= r["reasoning_seen"] <= 1
        assert not re.search(r"\d [+x] \d[^\n]*=", r["completion"]), r["completion"]  # no working left


def test_trace_refusals(fast_teacher, tmp_path):
    with pytest.raises(UserError, match="the traces of a task.s prompts only"):
        prompts = tmp_path / "p.txt"
        prompts.write_text("hello\n")
        generate_corpus(fast_teacher, tmp_path / "a", protection="trace", prompts=str(prompts), progress=False)
    with pytest.raises(UserError, match="drop --topk-logprobs"):
        generate_corpus(fast_teacher, tmp_path / "b", protection="trace", prompts=4, topk_logprobs=4,
                        progress=False)
    assert not (tmp_path / "a" / "manifest.json").exists() and not (tmp_path / "b" / "manifest.json").exists()


def test_a_teacher_without_parseable_traces_is_refused(tmp_path):
    from antidistill.students.models.presets import build_model

    untrained = build_model("tiny", seed=3)  # never learned the 'Answer:' format
    with pytest.raises(UserError, match="cannot be parsed") as err:
        generate_corpus(untrained, tmp_path / "c", protection="trace:keep=answer", prompts=4, max_new_tokens=12,
                        progress=False, teacher_name="untrained")
    assert "\n" not in str(err.value)
