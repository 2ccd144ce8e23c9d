"""`antidistill detect`: round trip on generated files, and one clear line for each bad input."""
import json
import os
import subprocess
import sys

import pytest
import torch

from antidistill.eval.cli import main
from antidistill.watermark import Key, parse_protection

from .conftest import VOCAB, generate

SPEC = "kgw:gamma=0.25,delta=2,h=1,hash=left"


@pytest.fixture(scope="module")
def files(tiny_lm, tmp_path_factory):
    d = tmp_path_factory.mktemp("detect")
    (d / "key").write_text("cli secret\n")
    prompts = torch.randint(3, VOCAB, (4, 5), generator=torch.Generator().manual_seed(0))
    marked = generate(tiny_lm, prompts, parse_protection(SPEC).processor(Key(b"cli secret"), VOCAB), new_tokens=120)
    plain = generate(tiny_lm, prompts, None, new_tokens=120, seed=9)
    with open(d / "texts.jsonl", "w") as fh:
        for i in range(4):
            fh.write(json.dumps({"id": f"marked-{i}", "token_ids": marked[i].tolist(),
                                 "prompt_ids": prompts[i].tolist()}) + "\n")
            fh.write(json.dumps({"id": f"plain-{i}", "token_ids": plain[i].tolist(),
                                 "prompt_ids": prompts[i].tolist()}) + "\n")
    return d


def test_round_trip(files, capsys):
    out = files / "verdicts.jsonl"
    rc = main(["detect", "--protection", SPEC, "--key-file", str(files / "key"), str(files / "texts.jsonl"),
               "--out", str(out), "--pooled"])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows][:2] == ["marked-0", "plain-0"]
    assert set(rows[0]) == {"id", "n_scored", "n_reference", "statistic", "z", "log10_p", "p_value", "watermarked",
                            "n_recurring"}
    assert all(r["watermarked"] for r in rows if r["id"].startswith("marked"))
    assert not any(r["watermarked"] for r in rows if r["id"].startswith("plain"))
    summary = capsys.readouterr().out
    assert "8 inputs, 4 watermarked at alpha=0.001" in summary and "pooled: WATERMARKED" in summary
    assert "cli secret" not in summary and Key(b"cli secret").fingerprint in summary


def test_key_from_environment_and_stdout(files, capsys, monkeypatch):
    monkeypatch.setenv("ANTIDISTILL_KEY", "cli secret")
    assert main(["detect", "--protection", SPEC, str(files / "texts.jsonl")]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 8 and "4 watermarked" in captured.err


def test_wrong_key_finds_nothing(files, capsys, monkeypatch):
    monkeypatch.setenv("ANTIDISTILL_KEY", "another key")
    assert main(["detect", "--protection", SPEC, str(files / "texts.jsonl"), "--pooled"]) == 0
    err = capsys.readouterr().err
    assert "0 watermarked" in err and "pooled: NOT DETECTED" in err


BAD_LINES = [
    ('{"token_ids": [1, 2, 3]}\nnot json\n', "line 2: not valid JSON"),
    ('{"token_ids": [1, -2]}\n', "line 1: `token_ids` must be a list of non-negative integers"),
    ('{"token_ids": "1 2 3"}\n', "line 1: `token_ids` must be a list of non-negative integers"),
    ('{"text": "hello"}\n', "line 1: has `text` but no --tokenizer"),
    ('{"id": 3}\n', "line 1: needs `token_ids` (list of ints) or `text`"),
    ('[1, 2]\n', "line 1: expected a JSON object"),
    ('{"token_ids": [1, 2], "prompt_ids": [true]}\n', "line 1: `prompt_ids` must be a list"),
]


@pytest.mark.parametrize("content, message", BAD_LINES)
def test_bad_lines_name_their_line(tmp_path, capsys, content, message):
    (tmp_path / "in.jsonl").write_text(content)
    (tmp_path / "key").write_text("k")
    out = tmp_path / "out.jsonl"
    rc = main(["detect", "--protection", SPEC, "--key-file", str(tmp_path / "key"), str(tmp_path / "in.jsonl"),
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize("args, message", [
    (["--protection", "rot13"], "unknown protection scheme 'rot13'; valid schemes:"),
    (["--protection", "kgw:gamma=2"], "gamma=2 is out of range"),
    (["--protection", "none"], "has no detector"),
    (["--protection", SPEC, "--alpha", "2"], "argument --alpha: must be a finite number with 0 < x < 1, got '2'"),
    (["--protection", SPEC, "--key-file", "/nonexistent/key"], "key file /nonexistent/key does not exist"),
    (["--protection", SPEC, "--out", "/nonexistent/dir/out.jsonl"], "output folder /nonexistent/dir does not exist"),
])
def test_bad_arguments(files, capsys, monkeypatch, args, message):
    monkeypatch.setenv("ANTIDISTILL_KEY", "k")
    rc = main(["detect", str(files / "texts.jsonl"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_missing_input_and_missing_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ANTIDISTILL_KEY", raising=False)
    assert main(["detect", "--protection", SPEC, str(tmp_path / "none.jsonl")]) == 2
    assert "no watermark key" in capsys.readouterr().err
    monkeypatch.setenv("ANTIDISTILL_KEY", "k")
    assert main(["detect", "--protection", SPEC, str(tmp_path / "none.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_console_script_help_lists_subcommands():
    exe = os.path.join(os.path.dirname(sys.executable), "antidistill")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    assert "detect" in result.stdout


def test_written_files_get_the_usual_permissions(tmp_path):
    from antidistill.watermark import atomic_write

    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "out.txt") as fh:
            fh.write("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644


def _write(path, texts, prompts=None):
    with open(path, "w") as fh:
        for i, t in enumerate(texts):
            rec = {"id": f"t{i}", "token_ids": [int(x) for x in t]}
            if prompts is not None:
                rec["prompt_ids"] = [int(x) for x in prompts[i]]
            fh.write(json.dumps(rec) + "\n")


def test_a_verdict_does_not_depend_on_the_other_inputs(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ANTIDISTILL_KEY", "cli secret")
    rows = [json.loads(line) for line in (files / "texts.jsonl").read_text().splitlines()]
    alone = tmp_path / "alone.jsonl"
    alone.write_text(json.dumps(rows[1]) + "\n")
    assert main(["detect", "--protection", SPEC, str(files / "texts.jsonl"), "--out", str(tmp_path / "all.out")]) == 0
    assert main(["detect", "--protection", SPEC, str(alone), "--out", str(tmp_path / "one.out")]) == 0
    together = [json.loads(line) for line in (tmp_path / "all.out").read_text().splitlines()][1]
    single = json.loads((tmp_path / "one.out").read_text())
    keys = ("n_scored", "statistic", "z", "log10_p", "p_value", "watermarked")
    assert [together[k] for k in keys] == [single[k] for k in keys]


def test_reference_texts_and_the_family_guard(tmp_path, capsys, monkeypatch):
    from .test_one_key import templated_texts

    monkeypatch.setenv("ANTIDISTILL_KEY", "k")
    _write(tmp_path / "in.jsonl", templated_texts(n=80))
    _write(tmp_path / "ref.jsonl", templated_texts(n=80, fill_seed=1))
    out = tmp_path / "out.jsonl"
    assert main(["detect", "--protection", SPEC, str(tmp_path / "in.jsonl"), "--out", str(out)]) == 0
    report = capsys.readouterr()
    plain = [json.loads(line) for line in out.read_text().splitlines()]
    assert "family guard:" in report.out and "look templated" in report.err and "--reference-texts" in report.err
    assert all(r["n_reference"] == 0 and r["n_recurring"] >= r["n_scored"] / 4 for r in plain)
    assert main(["detect", "--protection", SPEC, str(tmp_path / "in.jsonl"), "--out", str(out),
                 "--reference-texts", str(tmp_path / "ref.jsonl")]) == 0
    report = capsys.readouterr()
    with_ref = [json.loads(line) for line in out.read_text().splitlines()]
    assert "reference texts" in report.out and "80 texts" in report.out and "look templated" not in report.err
    assert all(r["n_reference"] > 0 and r["n_scored"] + r["n_reference"] == p["n_scored"]
               for r, p in zip(with_ref, plain))
    # --recurring-min sets the guard's m, and the p-values do not move with it
    assert main(["detect", "--protection", SPEC, str(tmp_path / "in.jsonl"), "--out", str(out),
                 "--recurring-min", "79"]) == 0
    assert "recur in >= 79 other inputs" in capsys.readouterr().out
    again = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["log10_p"] for r in again] == [r["log10_p"] for r in plain]


@pytest.mark.parametrize("args, message", [
    (["--reference-texts", "/nonexistent/ref.jsonl"], "--reference-texts /nonexistent/ref.jsonl does not exist"),
    (["--recurring-min", "0"], "argument --recurring-min"),
    (["--keep-shared-tuples"], "unrecognized arguments: --keep-shared-tuples"),
])
def test_bad_reference_and_guard_arguments(files, capsys, monkeypatch, args, message):
    monkeypatch.setenv("ANTIDISTILL_KEY", "k")
    rc = main(["detect", str(files / "texts.jsonl"), "--protection", SPEC, *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_empty_reference_file_is_refused(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ANTIDISTILL_KEY", "k")
    (tmp_path / "ref.jsonl").write_text("\n")
    rc = main(["detect", str(files / "texts.jsonl"), "--protection", SPEC, "--reference-texts",
               str(tmp_path / "ref.jsonl")])
    assert rc == 2 and "holds no records" in capsys.readouterr().err
