"""`--task SPEC` on `generate` and `grade` (demo, gym:NAME, jsonl:path=FILE), and a careless user's task
specs and task files: exit code 2, one stderr line, no traceback, nothing written (no --out folder or file)."""
import importlib.util
import json
import os

import pytest

from antidistill.eval.cli import main

from .test_bad_input import cli, refused

needs_gym = pytest.mark.skipif(importlib.util.find_spec("reasoning_gym") is None,
                               reason="needs reasoning-gym (the smollm2 extra)")
TINY_GYM = "gym:chain_sum,min_terms=2,max_terms=3,max_digits=1"


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTIDISTILL_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def problems(tmp_path):
    """A task file: 5 distillation rows and 4 test rows of skill `plus2`."""
    rows = [{"id": f"d{i}", "prompt": f"What is {i} + 1?", "answer": i + 1, "split": "distill"} for i in range(5)]
    rows += [{"id": f"t{i}", "prompt": f"What is {i} + 2?", "answer": i + 2, "split": "test", "skill": "plus2"}
             for i in range(4)]
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _records(folder):
    return [json.loads(line) for shard in sorted(folder.glob("shard-*.jsonl")) for line in shard.read_text().splitlines()]


# ------------------------------------------------------------------ what --task does

def test_generate_draws_its_prompts_from_the_tasks_distill_split(cache, problems, tmp_path, capsys):
    out = tmp_path / "corpus"
    assert cli(["generate", "--teacher", "tiny", "--task", f"jsonl:path={problems}", "--prompts", "3",
                "--max-new-tokens", "4", "--out", out, "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["task"] == f"jsonl:path={problems},grader=numeric" and printed["records"] == 3
    records = _records(out)
    assert {r["id"] for r in records} <= {f"d{i}" for i in range(5)} and len(records) == 3
    assert all(r["answer"] == str(int(r["id"][1:]) + 1) for r in records)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task"].startswith("jsonl:sha256=")  # the file's content, not its path
    # The same command finishes (here: finds finished) the same corpus.
    assert cli(["generate", "--teacher", "tiny", "--task", f"jsonl:path={problems}", "--prompts", "3",
                "--max-new-tokens", "4", "--out", out, "--quiet"]) == 0


def test_generate_default_task_is_the_demo(cache, tmp_path, capsys):
    assert cli(["generate", "--teacher", "tiny", "--prompts", "2", "--max-new-tokens", "2", "--out", tmp_path / "c",
                "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "demo"
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["task"] == "demo"
    assert {r["skill"] for r in _records(tmp_path / "c")} <= {"add", "mul", "sort", "count"}


def test_grade_grades_any_task_and_records_it(cache, problems, tmp_path, capsys):
    out, items = tmp_path / "grade.json", tmp_path / "items.csv"
    assert cli(["grade", "tiny", "--task", f"jsonl:path={problems}", "--n-test", "4", "--max-new-tokens", "4",
                "--out", out, "--items", items]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["task"] == f"jsonl:path={problems},grader=numeric"
    assert printed["task_key"].startswith("jsonl:sha256=") and printed["n_test"] == 4
    assert set(printed["skills"]) == {"plus2", "all"} and printed["skills"]["all"]["n"] == 4
    lo, hi = printed["skills"]["all"]["ci95"]
    assert 0 <= lo <= printed["skills"]["all"]["accuracy"] <= hi <= 1
    lines = items.read_text().splitlines()
    assert lines[0] == "id,skill,correct" and {ln.split(",")[0] for ln in lines[1:]} == {f"t{i}" for i in range(4)}


@needs_gym
def test_generate_and_grade_a_gym_task(cache, tmp_path, capsys):
    assert cli(["generate", "--teacher", "tiny", "--task", TINY_GYM, "--prompts", "3", "--max-new-tokens", "2",
                "--out", tmp_path / "c", "--quiet"]) == 0
    capsys.readouterr()
    records = _records(tmp_path / "c")
    assert len(records) == 3 and all(r["id"].startswith("chain_sum-distill-s0-") for r in records)
    assert all(r["prompt"].rstrip().endswith("'Answer: <answer>'.") for r in records)
    assert cli(["grade", "tiny", "--task", TINY_GYM, "--n-test", "3", "--max-new-tokens", "2", "--seed", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["task"] == "gym:chain_sum,max_digits=1,max_terms=3,min_terms=2" and printed["seed"] == 1
    assert set(printed["skills"]) == {"chain_sum", "all"} and printed["skills"]["all"]["n"] == 3


def test_train_takes_no_task(capsys, tmp_path):
    """Training reads a corpus, whose manifest already names its task: --task would have nothing to do."""
    refused(capsys, ["train", "--student", "tiny", "--corpus", tmp_path / "c", "--out", tmp_path / "s",
                     "--task", "demo"], "unrecognized arguments: --task")
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------ careless task specs and files

BAD_ROWS = {
    "not-json": "{not json",
    "no-prompt": '{"answer": 1}',
    "no-answer": '{"prompt": "p"}',
    "duplicate-id": '{"id": "a", "prompt": "p", "answer": 1}\n{"id": "a", "prompt": "q", "answer": 2}',
    "bad-split": '{"prompt": "p", "answer": 1, "split": "dev"}',
}


def _bad_specs(tmp_path):
    for name, text in BAD_ROWS.items():
        (tmp_path / f"{name}.jsonl").write_text(text + "\n")
    (tmp_path / "binary.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8")
    os.mkfifo(tmp_path / "fifo.jsonl")  # not a regular file: refused without blocking on it
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "p", "answer": 1, "split": "distill"}\n{"prompt": "q", "answer": 2, "split": "test"}\n')
    return {
        "mmlu": "unknown task 'mmlu'",
        "jsonl:": "give the file",
        "jsonl:grader=exact": "give the file",
        f"jsonl:path={tmp_path}/missing.jsonl": "does not exist or is not a file",
        f"jsonl:path={tmp_path}": "does not exist or is not a file",
        f"jsonl:path={tmp_path}/fifo.jsonl": "does not exist or is not a file",
        f"jsonl:path={tmp_path}/not-json.jsonl": "line 1: not valid JSON",
        f"jsonl:path={tmp_path}/no-prompt.jsonl": "line 1: needs a non-empty string \"prompt\"",
        f"jsonl:path={tmp_path}/no-answer.jsonl": "line 1: needs an \"answer\"",
        f"jsonl:path={tmp_path}/duplicate-id.jsonl": "line 2: id 'a' appears twice",
        f"jsonl:path={tmp_path}/bad-split.jsonl": "line 1: split 'dev' is not one of",
        f"jsonl:path={tmp_path}/binary.jsonl": "not valid UTF-8",
        f"jsonl:path={good},grader=regex": "grader=regex needs pattern=REGEX",
        f"jsonl:path={good},grader=regex,pattern=[0-9]+": "must have exactly one (group)",
        f"jsonl:path={good},grader=regex,pattern=([0-9]+": "is not a regular expression",
        f"jsonl:path={good},grader=fuzzy": "unknown grader 'fuzzy'",
    }


def test_careless_task_specs_are_one_line_and_write_nothing(tmp_path, capsys):
    for spec, match in _bad_specs(tmp_path).items():
        out = tmp_path / "out"
        refused(capsys, ["generate", "--teacher", "tiny", "--task", spec, "--prompts", "1", "--out", out], match)
        refused(capsys, ["grade", "tiny", "--task", spec, "--n-test", "1", "--out", tmp_path / "g.json",
                         "--items", tmp_path / "items.csv"], match)
        assert not any((tmp_path / p).exists() for p in ("out", "g.json", "items.csv")), spec


@needs_gym
@pytest.mark.parametrize("spec,match", [
    ("gym:", "give a dataset name"),
    ("gym:no_such_dataset", "unknown reasoning-gym dataset"),
    ("gym:chain_sum,colour=red", "reasoning-gym refused its parameters"),
    ("gym:chain_sum,min_terms=many", "reasoning-gym refused its parameters"),
    ("gym:chain_sum,min_terms", "'min_terms' is not name=value"),
])
def test_careless_gym_specs_are_one_line_and_write_nothing(tmp_path, capsys, spec, match):
    refused(capsys, ["generate", "--teacher", "tiny", "--task", spec, "--prompts", "1", "--out", tmp_path / "c"], match)
    refused(capsys, ["grade", "tiny", "--task", spec, "--out", tmp_path / "g.json"], match)
    assert not (tmp_path / "c").exists() and not (tmp_path / "g.json").exists()


def test_a_gym_task_without_reasoning_gym_is_one_line(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # as if the extra were not installed
    refused(capsys, ["grade", "tiny", "--task", "gsm", "--out", tmp_path / "g.json"], "need the reasoning-gym package")
    refused(capsys, ["generate", "--teacher", "tiny", "--task", "gym:chain_sum", "--prompts", "1", "--out",
                     tmp_path / "c"], "need the reasoning-gym package")
    assert not (tmp_path / "c").exists() and not (tmp_path / "g.json").exists()


def test_a_split_too_small_is_refused_before_the_model(cache, problems, tmp_path, capsys):
    refused(capsys, ["grade", "tiny", "--task", f"jsonl:path={problems}", "--n-test", "5", "--out", tmp_path / "g"],
            "split 'test' holds 4 rows; asked for 5 (--n-test 5)")
    refused(capsys, ["generate", "--teacher", "tiny", "--task", f"jsonl:path={problems}", "--prompts", "6",
                     "--out", tmp_path / "c"], "split 'distill' holds 5 rows; asked for 6 (--prompts 6)")
    assert not (tmp_path / "g").exists() and not (tmp_path / "c").exists()
    # The demo's bound is the parse-time one, for every task.
    refused(capsys, ["grade", "tiny", "--task", f"jsonl:path={problems}", "--n-test", "10001"], "--n-test")


@pytest.mark.parametrize("task", ["jsonl", pytest.param(TINY_GYM, marks=needs_gym)])
def test_trace_results_on_a_free_form_task_is_refused_before_anything_is_written(problems, tmp_path, capsys, task):
    spec = f"jsonl:path={problems}" if task == "jsonl" else task
    refused(capsys, ["generate", "--teacher", "tiny", "--protection", "trace:keep=results", "--task", spec,
                     "--prompts", "2", "--out", tmp_path / "c"], "has no step grammar")
    assert not (tmp_path / "c").exists()
    # An existing empty folder is left as it was, empty.
    (tmp_path / "d").mkdir()
    refused(capsys, ["generate", "--teacher", "tiny", "--protection", "trace:keep=results", "--task", spec,
                     "--prompts", "2", "--out", tmp_path / "d"], "has no step grammar")
    assert list((tmp_path / "d").iterdir()) == []


def test_the_help_names_the_task_families(capsys):
    for command in ("generate", "grade"):
        assert main([command, "--help"]) == 0
        assert "jsonl:path=FILE" in capsys.readouterr().out
