"""`antidistill grade`: per-skill accuracy with exact intervals, as JSON, for any model folder."""
import json

import pytest

from antidistill.eval.cli import main
from antidistill.students.models.presets import build_model


@pytest.fixture()
def model_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTIDISTILL_CACHE", str(tmp_path / "cache"))
    model, tok = build_model("tiny", seed=0)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    return tmp_path / "m"


def test_grade_writes_per_skill_accuracy_with_intervals(model_dir, tmp_path, capsys):
    out = tmp_path / "grade.json"
    assert main(["grade", str(model_dir), "--n-test", "8", "--max-new-tokens", "8", "--out", str(out),
                 "--items", str(tmp_path / "items.csv")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    skills = printed["skills"]
    assert set(skills) == {"add", "mul", "sort", "count", "all"}
    assert skills["all"]["n"] == 8 and sum(skills[s]["n"] for s in ("add", "mul", "sort", "count")) == 8
    for s in skills.values():  # an untrained model gets nothing right; the exact interval still says how sure
        assert s["accuracy"] == 0.0 and s["ci95"][0] == 0.0 and 0 < s["ci95"][1] < 1
    assert (tmp_path / "items.csv").read_text().startswith("id,skill,correct")


def test_grade_bad_input_is_one_line(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    assert main(["grade", "tiny", "--n-test", "0"]) == 2
