"""The generate/train subcommands: one JSON line on success, one error line and exit 2 on bad input."""
import json

import pytest

from antidistill.eval.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_then_train_through_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ANTIDISTILL_KEY", "cli-test-key")
    code, out, err = _run(capsys, "generate", "--teacher", "tiny", "--protection", "kgw:delta=2", "--prompts", "8",
                          "--max-new-tokens", "12", "--out", str(tmp_path / "c"), "--quiet")
    assert code == 0, err
    line = json.loads(out)
    assert line["records"] == 8 and line["protection"].startswith("kgw:gamma=")
    assert line["key_fingerprint"] and "cli-test-key" not in out
    code, out, err = _run(capsys, "train", "--student", "tiny", "--corpus", str(tmp_path / "c"), "--out",
                          str(tmp_path / "s"), "--max-steps", "2", "--batch-size", "4", "--quiet")
    assert code == 0, err
    assert json.loads(out)["global_step"] == 2


@pytest.mark.parametrize("argv,match", [
    (["train", "--student", "huge", "--corpus", "{tmp}", "--out", "{tmp}/s"], "not a corpus folder"),
    (["generate", "--teacher", "huge-model-that-is-nowhere/x/y", "--prompts", "4", "--out", "{tmp}/c"],
     "does not exist"),
    (["generate", "--teacher", "tiny", "--protection", "kgw:delta=x", "--prompts", "4", "--out", "{tmp}/c"],
     "not a valid float"),
    (["generate", "--teacher", "tiny", "--prompts", "nofile.txt", "--out", "{tmp}/c"], "does not exist"),
    (["train", "--student", "tiny", "--corpus", "{tmp}", "--corpus", "{tmp}", "--corpus", "{tmp}", "--out",
      "{tmp}/s"], "give --corpus once"),
])
def test_bad_inputs_give_one_line_and_exit_2(argv, match, tmp_path, capsys):
    code, out, err = _run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert code == 2
    assert match in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "c" / "manifest.json").exists() and not (tmp_path / "s" / "model").exists()
