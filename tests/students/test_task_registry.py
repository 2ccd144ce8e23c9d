"""The task registry: specs, answer extraction, the jsonl graders and splits, and a tiny gym task.

Every test here is fast (no model); the gym tests need the reasoning-gym package (the smollm2 extra)
and are skipped without it."""
import importlib.util
import json
import random

import pytest

from antidistill.students.tasks.answers import (extract_answer, normalise, numbers_equal, parse_choice,
                                                parse_number, split_reasoning)
from antidistill.students.tasks.registry import DemoTask, Task, parse_task
from antidistill.watermark.errors import UserError

needs_gym = pytest.mark.skipif(importlib.util.find_spec("reasoning_gym") is None,
                               reason="needs reasoning-gym (the smollm2 extra)")
TINY_GYM = "gym:chain_sum,min_terms=2,max_terms=3,max_digits=1"  # ChainSumConfig fields; a few hundred problems


# ------------------------------------------------------------------ answer extraction

@pytest.mark.parametrize("completion,answer,how", [
    ("work\n<answer>12</answer>", "12", "tag"),
    ("<answer>1</answer> then <answer> 2  3 </answer>", "2 3", "tag"),  # the last block, whitespace collapsed
    ("<answer>12</answer>\nAnswer: 3", "12", "tag"),  # tags before the Answer: line
    ("so \\boxed{42}.", "42", "boxed"),
    ("\\boxed{1} or rather \\boxed{\\frac{1}{2}}", "\\frac{1}{2}", "boxed"),  # the last box, nested braces
    ("\\boxed{\\{a, \\{b\\}\\}}", "\\{a, \\{b\\}\\}", "boxed"),
    ("steps\n#### 1,234\n", "1,234", "hashes"),
    ("#### 1\n#### 2", "2", "hashes"),
    ("#### 7\nAnswer: 9", "7", "hashes"),  # #### before Answer:
    ("3 + 4 = 7\nAnswer: 7", "7", "answer-line"),
    ("Answer: 1\nAnswer:   a   b \nsome chatter", "a b", "answer-line"),
    ("<answer></answer>Answer: 4", "4", "answer-line"),  # an empty tag is no answer
])
def test_extract_answer_conventions_in_order(completion, answer, how):
    assert extract_answer(completion) == (answer, how)


def test_think_block_is_removed_before_anything_is_looked_for():
    assert extract_answer("<think>Answer: 5 \\boxed{5} #### 5</think>\nAnswer: 7") == ("7", "answer-line")
    assert extract_answer("<think>the sum is 12</think>", fallback="number") == (None, "none")
    assert split_reasoning("<think>r</think>\n\nAnswer: 7") == ("<think>r</think>", "Answer: 7", True)
    assert split_reasoning("Answer: 7") == ("", "Answer: 7", False)


@pytest.mark.parametrize("fallback", ["none", "line", "number"])
def test_a_truncated_think_block_has_no_answer(fallback):
    cut = "<think>Let me see. Answer: 5, so \\boxed{5}\n#### 5\nthe total is 5"
    assert extract_answer(cut, fallback=fallback) == (None, "none")
    assert split_reasoning(cut) == (cut, "", True)


def test_fallbacks_only_when_asked():
    text = "the total is 3 and then 4\n  so four  \n\n"
    assert extract_answer(text) == (None, "none")
    assert extract_answer(text, fallback="line") == ("so four", "last-line")
    assert extract_answer(text, fallback="number") == ("4", "last-number")
    assert extract_answer("", fallback="line") == (None, "none")
    assert extract_answer("no digits", fallback="number") == (None, "none")
    assert extract_answer("\\boxed{\\frac{1}{2", fallback="none") == (None, "none")  # a box cut off is no answer
    with pytest.raises(ValueError):
        extract_answer("x", fallback="guess")


def test_parsers():
    assert parse_number("$1,234.50") == 1234.5 and parse_number("7.") == 7.0 and parse_number("-3") == -3.0
    assert parse_number("from 3 to 5") == 5.0 and parse_number("none") is None and parse_number(None) is None
    assert parse_number("1e400") is None  # not finite
    assert numbers_equal(0.1 + 0.2, 0.3) and not numbers_equal(1, 1.1) and not numbers_equal(None, 1)
    assert [parse_choice(t) for t in ("B", "(c)", "B) 42", "Option D", "the end", None)] == \
        ["B", "C", "B", "D", None, None]
    assert normalise("  Paris. ") == "Paris" and normalise("'a   b'") == "a b" and normalise("  ") is None


# ------------------------------------------------------------------ the registry

def test_parse_task_families_and_aliases():
    assert isinstance(parse_task(None), DemoTask) and isinstance(parse_task("demo"), DemoTask)
    assert parse_task(" demo ").spec == "demo" and parse_task("demo").key == "demo"
    task = parse_task("demo")
    assert parse_task(task) is task


@pytest.mark.parametrize("spec,match", [
    ("", "empty task spec"),
    ("   ", "empty task spec"),
    ("mmlu", "unknown task 'mmlu'; valid tasks: demo, gym:NAME"),
    ("demo:hard=1", "task demo takes no parameters"),
    ("jsonl:", "give the file"),
    ("jsonl:grader=exact", "give the file"),
    ("jsonl:path=x.jsonl,colour=red", "unknown parameter(s) colour"),
    ("jsonl:path=x.jsonl,grader=fuzzy", "unknown grader 'fuzzy'"),
    ("jsonl:path=x.jsonl,grader=regex", "grader=regex needs pattern=REGEX"),
    ("jsonl:path=x.jsonl,pattern=(\\d+)", "pattern= needs grader=regex"),
    ("jsonl:path=x.jsonl,grader=regex,pattern=\\d+", "must have exactly one (group)"),
    ("jsonl:path=x.jsonl,grader=regex,pattern=(a)(b)", "must have exactly one (group)"),
    ("jsonl:path=x.jsonl,grader=regex,pattern=(unclosed", "is not a regular expression"),
    ("jsonl:path=x.jsonl,path=y.jsonl", "parameter 'path' given twice"),
    ("jsonl:path", "'path' is not name=value"),
    ("jsonl:path=/no/such/file.jsonl", "does not exist or is not a file"),
])
def test_bad_specs_are_one_line_user_errors(spec, match):
    with pytest.raises(UserError) as err:
        parse_task(spec)
    assert match in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------ jsonl: rows, splits, graders

def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _rows(n, **extra):
    return [{"id": f"q{i}", "prompt": f"What is {i} + {i}?", "answer": 2 * i, **extra} for i in range(n)]


def _splits(task):
    return {s: {r["id"] for r in task.rows[s]} for s in ("train", "distill", "test")}


def test_jsonl_split_is_a_hash_of_the_id_never_of_the_file_order(tmp_path):
    rows = _rows(300)
    a = parse_task(f"jsonl:path={_write(tmp_path / 'a.jsonl', rows)}")
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    b = parse_task(f"jsonl:path={_write(tmp_path / 'b.jsonl', shuffled)}")
    c = parse_task(f"jsonl:path={_write(tmp_path / 'c.jsonl', shuffled[:100])}")  # a smaller file
    sa, sb, sc = _splits(a), _splits(b), _splits(c)
    assert sa == sb
    assert all(sc[s] <= sa[s] for s in sc)
    assert not (sa["train"] & sa["distill"] or sa["train"] & sa["test"] or sa["distill"] & sa["test"])
    assert sum(map(len, sa.values())) == 300 and all(len(v) > 10 for v in sa.values())  # roughly 60/30/10


def test_jsonl_drawn_examples_do_not_depend_on_the_file_order(tmp_path):
    rows = _rows(300)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    a = parse_task(f"jsonl:path={_write(tmp_path / 'a.jsonl', rows)}")
    b = parse_task(f"jsonl:path={_write(tmp_path / 'b.jsonl', shuffled)}")
    assert [e.id for e in a.examples("test", 10, seed=3)] == [e.id for e in b.examples("test", 10, seed=3)]


def test_jsonl_rows_without_ids_keep_their_split_when_the_file_is_reordered(tmp_path):
    rows = [{"prompt": f"What is {i} + {i}?", "answer": 2 * i} for i in range(60)]
    a = parse_task(f"jsonl:path={_write(tmp_path / 'a.jsonl', rows)}")
    b = parse_task(f"jsonl:path={_write(tmp_path / 'b.jsonl', rows[::-1])}")
    split_of_prompt = {t: {r["prompt"]: s for s, rs in t.rows.items() for r in rs} for t in (a, b)}
    assert split_of_prompt[a] == split_of_prompt[b]


def test_jsonl_explicit_splits_skills_and_seeded_order(tmp_path):
    rows = [*_rows(40, split="test", skill="sums"), {"id": "t", "prompt": "Capital of France?", "answer": "Paris",
                                                     "split": "train"}]
    task = parse_task(f"jsonl:path={_write(tmp_path / 'p.jsonl', rows)}")
    assert len(task.rows["test"]) == 40 and [r["id"] for r in task.rows["train"]] == ["t"]
    small, big = task.examples("test", 5, seed=1), task.examples("test", 20, seed=1)
    assert big[:5] == small  # a larger n extends a smaller one
    assert task.examples("test", 20, seed=1) == big  # deterministic
    other = task.examples("test", 20, seed=2)
    assert [e.id for e in other] != [e.id for e in big] and {e.id for e in task.examples("test", 40, seed=2)} == \
        {e.id for e in task.examples("test", 40, seed=1)}  # another seed: the same problems, another order
    ex = small[0]
    assert ex.skill == "sums" and ex.split == "test" and ex.prompt.endswith("?\n")
    assert ex.completion == f"Answer: {ex.answer}" and task.correct(ex, ex.completion)
    assert task.examples("train", 1)[0].skill == "all-items"  # the default skill
    with pytest.raises(UserError, match="split 'test' holds 40 rows; asked for 41"):
        task.examples("test", 41)
    assert len(task.examples("test", 45, unique=False)) == 45  # repeats only when asked for
    with pytest.raises(UserError, match="unknown split"):
        task.examples("validation", 1)


def test_jsonl_key_is_the_content_not_the_path(tmp_path):
    rows = _rows(5)
    a = parse_task(f"jsonl:path={_write(tmp_path / 'a.jsonl', rows)}")
    b = parse_task(f"jsonl:path={_write(tmp_path / 'b.jsonl', rows)}")
    c = parse_task(f"jsonl:path={_write(tmp_path / 'c.jsonl', rows[:4])}")
    e = parse_task(f"jsonl:path={tmp_path / 'a.jsonl'},grader=exact")
    assert a.spec != b.spec and a.key == b.key and a.key != c.key and a.key != e.key


@pytest.mark.parametrize("row,match", [
    ("not json", "line 2: not valid JSON"),
    ("[1, 2]", "line 2: expected a JSON object"),
    ('{"answer": 1}', "line 2: needs a non-empty string \"prompt\""),
    ('{"prompt": "  ", "answer": 1}', "needs a non-empty string \"prompt\""),
    ('{"prompt": 5, "answer": 1}', "needs a non-empty string \"prompt\""),
    ('{"prompt": "p"}', "line 2: needs an \"answer\""),
    ('{"prompt": "p", "answer": ""}', "needs an \"answer\""),
    ('{"prompt": "p", "answer": true}', "needs an \"answer\""),
    ('{"prompt": "p", "answer": [1]}', "needs an \"answer\""),
    ('{"id": "q0", "prompt": "p", "answer": 1}', "line 2: id 'q0' appears twice"),
    ('{"prompt": "p", "answer": 1, "split": "validation"}', "line 2: split 'validation' is not one of"),
    ('{"prompt": "p", "answer": 1, "skill": "all"}', "skill must be a non-empty string other than 'all'"),
    ('{"prompt": "\\ud800", "answer": 1}', "lone surrogate"),
])
def test_jsonl_bad_rows_name_their_line(tmp_path, row, match):
    path = _write(tmp_path / "p.jsonl", [_rows(1)[0], row])
    with pytest.raises(UserError) as err:
        parse_task(f"jsonl:path={path}")
    assert match in str(err.value) and "\n" not in str(err.value)


def test_jsonl_unreadable_files(tmp_path):
    (tmp_path / "bin.jsonl").write_bytes(b'{"prompt": "p", "answer": 1}\n\x89PNG\x00\xff\xfe\n')
    (tmp_path / "empty.jsonl").write_text("\n\n")
    for path, match in ((tmp_path / "bin.jsonl", "line 2: not valid UTF-8"), (tmp_path / "empty.jsonl", "holds no rows"),
                        (tmp_path, "does not exist or is not a file")):
        with pytest.raises(UserError, match=match):
            parse_task(f"jsonl:path={path}")


@pytest.mark.parametrize("grader,answer,right,wrong", [
    ("numeric", "1234", ["Answer: 1,234", "#### $1,234.00", "<answer>1234</answer>", "so it is 1234",
                         "\\boxed{1234}", "<think>maybe 5</think>Answer: 1234"],
     ["Answer: 1235", "1234 was wrong, it is 99", "<think>1234</think>", "", "<think>Answer: 1234"]),
    ("exact", "Paris", ["Answer: Paris", "Answer:  Paris.", "<answer>'Paris'</answer>", "thinking\nParis"],
     ["Answer: paris", "Answer: Paris, France", "<think>Answer: Paris"]),
    ("choice", "(B)", ["Answer: B", "Answer: (b)", "\\boxed{B}", "Option B", "B) 42"],
     ["Answer: C", "Answer: none of them", "<think>Answer: B</think>"]),
])
def test_jsonl_graders(tmp_path, grader, answer, right, wrong):
    path = _write(tmp_path / "p.jsonl", [{"id": "x", "prompt": "q", "answer": answer, "split": "test"}])
    task = parse_task(f"jsonl:path={path},grader={grader}")
    ex = task.examples("test", 1)[0]
    for text in right:
        assert task.score(ex, text) == 1.0 and task.correct(ex, text), text
    for text in wrong:
        assert task.score(ex, text) == 0.0 and not task.correct(ex, text), text
    fresh = parse_task(f"jsonl:path={path},grader={grader}")  # a record dict, graded by another task object
    assert fresh.score({"id": "x", "answer": ex.answer}, right[0]) == 1.0


def test_jsonl_regex_grader_takes_the_last_match_of_its_group(tmp_path):
    path = _write(tmp_path / "p.jsonl", [{"id": "x", "prompt": "q", "answer": "17", "split": "test"}])
    task = parse_task(f"jsonl:path={path},grader=regex,pattern=RESULT=(\\d+)")
    ex = task.examples("test", 1)[0]
    assert task.score(ex, "RESULT=3 ... RESULT=17") == 1.0
    assert task.score(ex, "RESULT=17 ... RESULT=3") == 0.0
    assert task.score(ex, "Answer: 17") == 0.0  # the pattern, not the usual conventions
    assert task.score({"answer": "17"}, "RESULT= 17") == 0.0


def test_free_form_tasks_support_only_answer_keeping(tmp_path):
    task = parse_task(f"jsonl:path={_write(tmp_path / 'p.jsonl', _rows(3))}")
    assert task.supports("trace:keep=answer") is None and task.supports("answer-only") is None
    for feature in ("trace:keep=results", "canonicalize", "recompute"):
        assert "no step grammar" in task.supports(feature)
    assert all(DemoTask().supports(f) is None for f in ("trace:keep=results", "canonicalize"))
    with pytest.raises(UserError, match="no step grammar"):
        task.thin("Answer: 2", "all-items", "results")
    shown, share, found = task.thin("<think>2 + 2 is 4</think>\nAnswer: 4", "all-items", "answer")
    assert (shown, share, found) == ("Answer: 4", 0.0, True)


# ------------------------------------------------------------------ gym (reasoning-gym)

@needs_gym
def test_gym_task_splits_are_disjoint_by_question_and_deterministic():
    a, b = parse_task(TINY_GYM), parse_task(TINY_GYM)
    assert isinstance(a, Task) and a.spec == "gym:chain_sum,max_digits=1,max_terms=3,min_terms=2"
    assert parse_task("gym:chain_sum,max_terms=3,min_terms=2,max_digits=1").spec == a.spec  # canonical order
    questions = {}
    for split, n in (("train", 30), ("distill", 20), ("test", 10)):
        exs = a.examples(split, n)
        assert [e.prompt for e in exs] == [e.prompt for e in b.examples(split, n)]  # two parses, one stream
        assert a.examples(split, n // 2) == exs[:n // 2]  # a larger n extends a smaller one
        questions[split] = {e.problem for e in exs}
        assert len(questions[split]) == n and all(e.split == split for e in exs)
    assert not (questions["train"] & questions["distill"] or questions["train"] & questions["test"]
                or questions["distill"] & questions["test"])
    assert [e.prompt for e in a.examples("test", 10, seed=1)] != [e.prompt for e in a.examples("test", 10)]


@needs_gym
def test_gym_grading_reference_wrong_and_a_record_scored_by_a_fresh_task():
    task = parse_task(TINY_GYM)
    exs = task.examples("distill", 6, seed=4)
    for ex in exs:
        assert ex.completion == f"Answer: {ex.answer}"
        assert task.score(ex, ex.completion) == 1.0 and task.correct(ex, ex.completion)
        assert task.score(ex, f"<answer>{ex.answer}</answer>") == 1.0
        assert task.score(ex, f"Answer: {int(ex.answer) + 1}") == 0.0
        assert task.score(ex, f"<think>Answer: {ex.answer}") == 0.0  # cut off inside its reasoning
        assert task.score(ex, "") == 0.0
    fresh = parse_task(TINY_GYM)  # as a corpus record is graded later, by another process
    last = exs[-1]
    assert fresh.score({"id": last.id, "skill": last.skill, "answer": last.answer}, last.completion) == 1.0
    with pytest.raises(UserError, match="is not one of its example ids"):
        fresh.score({"id": "q0", "answer": "1"}, "Answer: 1")


@needs_gym
@pytest.mark.parametrize("spec,match", [
    ("gym:", "give a dataset name"),
    ("gym:,min_terms=2", "give a dataset name"),
    ("gym:no_such_dataset", "unknown reasoning-gym dataset"),
    ("gym:chain_sum,colour=red", "reasoning-gym refused its parameters"),
    ("gym:chain_sum,min_terms=x", "reasoning-gym refused its parameters"),
    ("gym:chain_sum,min_terms=5,max_terms=2", "reasoning-gym refused its parameters"),
    ("gym:chain_sum,min_terms", "'min_terms' is not name=value"),
])
def test_gym_bad_specs_are_one_line_user_errors(spec, match):
    with pytest.raises(UserError) as err:
        parse_task(spec)
    assert match in str(err.value) and "\n" not in str(err.value)


@needs_gym
def test_gym_free_form_traces():
    task = parse_task(TINY_GYM)
    assert task.supports("trace:keep=answer") is None and "no step grammar" in task.supports("trace:keep=results")


def test_gym_without_reasoning_gym_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # as if not installed
    with pytest.raises(UserError, match="gym tasks need the reasoning-gym package"):
        parse_task("gym:chain_sum")
    with pytest.raises(UserError, match="gym tasks need the reasoning-gym package"):
        parse_task("gsm")


def test_regex_pattern_with_commas_and_exact_answers_in_quotes(tmp_path):
    path = _write(tmp_path / "r.jsonl", [{"id": "a", "prompt": "p", "answer": "123", "split": "test"},
                                         {"id": "b", "prompt": "q", "answer": "Paris", "split": "test"}])
    regex = parse_task(f"jsonl:path={path},grader=regex,pattern=final: (\\d{{1,3}})")
    a = next(e for e in regex.examples("test", 2) if e.id == "a")
    assert regex.correct(a, "so final: 123") and not regex.correct(a, "final: 12")
    exact = parse_task(f"jsonl:path={path},grader=exact")
    b = next(e for e in exact.examples("test", 2) if e.id == "b")
    assert exact.correct(b, 'Answer: "Paris."') and exact.correct(b, "<answer>Paris</answer>")


def test_numeric_grading_tells_a_million_from_a_million_and_one(tmp_path):
    path = _write(tmp_path / "n.jsonl", [{"id": "a", "prompt": "p", "answer": 1000000, "split": "test"}])
    t = parse_task(f"jsonl:path={path}")
    e = t.examples("test", 1)[0]
    assert t.correct(e, "Answer: 1,000,000") and not t.correct(e, "Answer: 1000001")
