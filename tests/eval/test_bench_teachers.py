"""Smoke test of the teacher bench: an untrained `tiny` model on two items of a tiny gym task, end to end.

Only the files, their columns and the ranges are checked, not accuracy (the model is untrained).
"""
import json

import pandas as pd
import pytest

pytest.importorskip("reasoning_gym")

from antidistill.eval.bench import teachers as bench  # noqa: E402

TASK = "gym:chain_sum,max_digits=2,max_terms=2,min_terms=2"  # canonical: parameters sorted


def test_tiny_run_writes_table_and_completions(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTIDISTILL_CACHE", str(tmp_path / "cache"))
    argv = ["--model", "tiny", "--tasks", f"{TASK};", "--n", "2", "--max-new-tokens", "4", "--quiet",
            "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    df = pd.read_csv(tmp_path / "teachers.csv")
    assert list(df.columns) == list(bench.COLUMNS)
    assert len(df) == 1 and df.task[0] == TASK and df.n[0] == 2
    assert 0 <= df.correct[0] <= df.correct_last_number[0] <= 2
    for col in ("accuracy", "ci_lo", "ci_hi", "answer_found", "truncated", "accuracy_last_number"):
        assert df[col].between(0, 1).all(), col
    assert df.ci_lo[0] <= df.accuracy[0] <= df.ci_hi[0]
    assert 0 <= df.mean_tokens[0] <= 4 and df.seconds[0] >= 0
    records = [json.loads(line) for line in (tmp_path / "completions.jsonl").read_text().splitlines()]
    assert len(records) == 2 and {"id", "answer", "completion", "correct", "found_by"} <= set(records[0])
    text = (tmp_path / "teachers.md").read_text()
    assert f"`{TASK}`" in text and "torch thread" in text and "python -m antidistill.eval.bench.teachers" in text


def test_bad_task_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--model", "tiny", "--tasks", "gym:no_such_dataset", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "unknown reasoning-gym dataset" in capsys.readouterr().err
    assert not (tmp_path / "teachers.csv").exists()
