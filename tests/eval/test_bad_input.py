"""Bad input from a careless user: exit code 2, exactly one stderr line, no traceback, nothing left
behind that blocks the corrected command -- one test per kind of failure, a few inputs each."""
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from antidistill.eval.cli import main

SECRET = "bad-input-test-key"
KGW = "kgw:gamma=0.25,delta=2,h=1,hash=left"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny random teacher's KGW corpus and a 2-step student, in a private cache."""
    root = tmp_path_factory.mktemp("bad-input")
    old = os.environ.get("ANTIDISTILL_CACHE")
    os.environ["ANTIDISTILL_CACHE"] = str(root / "cache")
    (root / "key").write_text(SECRET + "\n")
    assert main(["generate", "--teacher", "tiny", "--protection", KGW, "--key-file", str(root / "key"),
                 "--prompts", "6", "--max-new-tokens", "12", "--out", str(root / "corpus"), "--quiet"]) == 0
    assert main(["train", "--student", "tiny", "--corpus", str(root / "corpus"), "--out", str(root / "student"),
                 "--max-steps", "1", "--batch-size", "6", "--quiet"]) == 0
    yield root
    if old is None:
        os.environ.pop("ANTIDISTILL_CACHE", None)
    else:
        os.environ["ANTIDISTILL_CACHE"] = old


def cli(argv) -> int:
    return main([str(a) for a in argv])


def refused(capsys, argv, match: str = "") -> str:
    """Run the CLI; assert exit 2, one stderr line (containing `match`), no traceback."""
    code = cli(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err
    return err


def _subst(argv, w: Path):
    return [str(a).replace("{w}", str(w)) for a in argv]


# ------------------------------------------------------------------ numbers at the edge

@pytest.mark.parametrize("argv,option", [
    (["detect", "{w}/corpus", "--protection", KGW, "--alpha", "inf"], "--alpha"),
    (["detect", "{w}/corpus", "--protection", KGW, "--alpha", "0"], "--alpha"),
    (["train", "--student", "tiny", "--corpus", "{w}/corpus", "--out", "{w}/s", "--lr", "inf"], "--lr"),
    (["train", "--student", "tiny", "--corpus", "{w}/corpus", "--out", "{w}/s", "--lr", "nan"], "--lr"),
    (["train", "--student", "tiny", "--corpus", "{w}/corpus", "--out", "{w}/s", "--lr", "-1"], "--lr"),
    (["train", "--student", "tiny", "--corpus", "{w}/corpus", "--out", "{w}/s", "--max-steps", "0"], "--max-steps"),
    (["train", "--student", "tiny", "--corpus", "{w}/corpus", "--out", "{w}/s", "--max-steps", "-5"], "--max-steps"),
    (["train", "--student", "tiny", "--corpus", "{w}/corpus", "--out", "{w}/s", "--seed", "1.7"], "--seed"),
    (["train", "--student", "tiny", "--corpus", "{w}/corpus", "--out", "{w}/s", "--lora", "r=4,alpha=inf"], "alpha"),
    (["train", "--student", "tiny", "--corpus", "{w}/corpus", "--out", "{w}/s", "--device", "tpu"], "tpu"),
    (["generate", "--teacher", "tiny", "--prompts", "2", "--out", "{w}/g", "--temperature", "inf"], "--temperature"),
    (["generate", "--teacher", "tiny", "--prompts", "2", "--out", "{w}/g", "--temperature", "0"], "--temperature"),
    (["generate", "--teacher", "tiny", "--prompts", "2", "--out", "{w}/g", "--max-new-tokens", "0"],
     "--max-new-tokens"),
    (["generate", "--teacher", "tiny", "--prompts", "2", "--out", "{w}/g", "--topk-logprobs", "100000"],
     "exceeds the teacher's vocabulary"),
    (["audit", "--suspect", "{w}/student", "--protection", KGW, "--mode", "generation", "--prompts", "2",
      "--temperature", "nan", "--out", "{w}/a"], "--temperature"),
])
def test_numbers_out_of_range_are_refused(world, capsys, argv, option):
    refused(capsys, _subst(argv, world), option)
    assert not any((world / d).exists() for d in ("s", "g", "a"))


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused(world, capsys):
    refused(capsys, ["generate", "--teacher", "tiny", "--prompts", "2", "--out", world / "g", "--device", "cuda"],
            "CUDA is not available")
    assert not (world / "g").exists()


@pytest.mark.parametrize("spec,match", [
    ("kgw:gamma=1e-300", "0.001 <= gamma <= 0.999"),
    ("kgw:delta=1e308", "0 <= delta <= 100"),
    ("kgw:delta=1e39", "0 <= delta <= 100"),
])
def test_protection_parameters_out_of_range_are_refused(world, capsys, spec, match):
    refused(capsys, ["generate", "--teacher", "tiny", "--protection", spec, "--key-file", world / "key",
                     "--prompts", "2", "--out", world / "g"], match)
    assert not (world / "g").exists()


@pytest.mark.parametrize("toml,match", [
    ('seed = 1.7', "seed must be an integer"),
    ('seed = "x"', "seed must be an integer"),
    ('alpha = "abc"', "alpha must be a number"),
    ('alpha = nan', "alpha must be finite"),
    ('protections = "none"', "protections must be a list"),
    ('protections = ["none", 3]', "protections must be a string, got 3"),
    ('[eval]\naudit_modes = ["readin"]', "'readin' is not one of reading, generation"),
    ('[corpus]\ntemperature = "hot"', "corpus.temperature must be a number"),
    ('[students]\nmax_steps = "ten"', "students.max_steps must be an integer"),
    ('[students]\nmode = "kd"', "is not one of sft, logit-kd"),
    ('[teacher.demo]\nsteps = -3', "teacher.demo.steps must be finite and > 0"),
    ('name = "../elsewhere"', "plain folder name"),
    ('attacks = "canonicalize"', "attacks must be a list"),
    ('attacks = ["canonicalize", 3]', "attacks must be a string, got 3"),
    ('attacks = ["shred"]', "unknown attack 'shred'"),
    ('attacks = ["dilute:rho=2"]', "rho=2 is out of range"),
])
def test_config_values_of_the_wrong_type_or_range_are_refused(world, capsys, tmp_path, toml, match):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml + "\n")
    refused(capsys, ["run", cfg, "--out", tmp_path / "res", "--cache-dir", tmp_path / "cache"], match)
    assert not (tmp_path / "res").exists()


# ------------------------------------------------------------------ files a user hands in

def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind,data,match", [
    ("jsonl", b'{"token_ids": [1, 2]}\n{"text": "caf\xe9"}\n', "line 2: not valid UTF-8"),
    ("jsonl", b'{"text": "\\ud800 x"}\n', "lone surrogate"),
    ("prompts-txt", b"fine\n\xff\xfe bad\n", "line 2: not valid UTF-8"),
    ("prompts-jsonl", b'{"prompt": "ok"}\n{"prompt": "\\udc80"}\n', "line 2: `prompt` holds a lone surrogate"),
])
def test_undecodable_text_names_file_and_line(world, capsys, tmp_path, kind, data, match):
    if kind == "jsonl":
        f = _write(tmp_path / "in.jsonl", data)
        refused(capsys, ["detect", f, "--protection", KGW, "--key-file", world / "key", "--tokenizer",
                         world / "student"], match)
    else:
        f = _write(tmp_path / ("p.txt" if kind == "prompts-txt" else "p.jsonl"), data)
        refused(capsys, ["generate", "--teacher", "tiny", "--prompts", f, "--out", tmp_path / "g"], match)
        assert not (tmp_path / "g").exists()


@pytest.mark.parametrize("what", ["key", "input", "prompts"])
def test_unreadable_files_give_one_line(world, capsys, tmp_path, monkeypatch, what):
    """Permission denied (simulated: the tests may run as root, who can read anything)."""
    victim = _write(tmp_path / ("p.txt" if what == "prompts" else f"{what}.jsonl"), b'{"token_ids": [1]}\n')
    real = Path.read_bytes

    def deny(self):
        if self == victim:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    argv = {"key": ["detect", world / "corpus", "--protection", KGW, "--key-file", victim],
            "input": ["detect", victim, "--protection", KGW, "--key-file", world / "key"],
            "prompts": ["generate", "--teacher", "tiny", "--prompts", victim, "--out", tmp_path / "g"]}[what]
    refused(capsys, argv, "Permission denied")


def test_writes_replace_only_regular_files(world, capsys, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    target = _write(tmp_path / "target.jsonl", b"keep\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    cases = [(folder, "is a folder"), (link, "symbolic link")]
    if Path("/dev/full").exists():
        cases.append((Path("/dev/full"), "device"))
    for out, match in cases:
        refused(capsys, ["detect", world / "corpus", "--protection", KGW, "--key-file", world / "key",
                         "--out", out], match)
    assert link.is_symlink() and target.read_bytes() == b"keep\n" and folder.is_dir()
    if Path("/dev/full").exists():
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def _edited_corpus(world, tmp_path, edit_manifest=None, edit_record=None) -> Path:
    c = tmp_path / "c"
    shutil.copytree(world / "corpus", c)
    m = json.loads((c / "manifest.json").read_text())
    if edit_record is not None:  # edit a shard and re-hash it, as a careless user would
        shard = c / m["shards"][0]["file"]
        lines = shard.read_text().splitlines()
        rec = json.loads(lines[0])
        edit_record(rec)
        lines[0] = json.dumps(rec)
        shard.write_text("\n".join(lines) + "\n")
        m["shards"][0]["sha256"] = hashlib.sha256(shard.read_bytes()).hexdigest()
    if edit_manifest is not None:
        edit_manifest(m)
    (c / "manifest.json").write_text(json.dumps(m))
    return c


@pytest.mark.parametrize("edit_manifest,edit_record,match", [
    (lambda m: m.update(shards="abc"), None, "`shards` must be a list"),
    (lambda m: m["shards"][0].pop("index"), None, "needs an integer `index`"),
    (lambda m: m["shards"][0].update(file="../../x"), None, "plain file name inside the corpus folder"),
    (None, lambda r: r["completion_ids"].__setitem__(0, "7"), "not a valid record"),
    (None, lambda r: r["completion_ids"].__setitem__(0, 100000), "below the vocabulary size"),
])
def test_malformed_corpora_are_refused_by_every_reader(world, capsys, tmp_path, edit_manifest, edit_record, match):
    c = _edited_corpus(world, tmp_path, edit_manifest, edit_record)
    refused(capsys, ["detect", c, "--protection", KGW, "--key-file", world / "key"], match)
    refused(capsys, ["train", "--student", "tiny", "--corpus", c, "--out", tmp_path / "s", "--max-steps", "1"], match)
    refused(capsys, ["audit", "--suspect", world / "student", "--protection", KGW, "--key-file", world / "key",
                     "--texts", c, "--out", tmp_path / "a"], match)
    assert not (tmp_path / "s").exists() and not (tmp_path / "a").exists()


def test_out_of_vocabulary_ids_in_jsonl_are_refused_when_the_tokenizer_is_known(world, capsys, tmp_path):
    f = _write(tmp_path / "ids.jsonl", b'{"token_ids": [5, 6]}\n{"token_ids": [600, 100000]}\n')
    refused(capsys, ["detect", f, "--protection", KGW, "--key-file", world / "key", "--tokenizer",
                     world / "student"], "line 2: token id 100000 is outside the vocabulary")


def test_truncated_weights_are_refused_and_the_audit_leaves_no_folder(world, capsys, tmp_path):
    s = tmp_path / "student"
    shutil.copytree(world / "student" / "model", s)
    with open(s / "model.safetensors", "r+b") as fh:
        fh.truncate(1000)
    refused(capsys, ["audit", "--suspect", s, "--protection", KGW, "--key-file", world / "key",
                     "--texts", world / "corpus", "--out", tmp_path / "a"], "cannot load model")
    assert not (tmp_path / "a").exists()
    # the corrected command (the intact model) then writes its evidence there
    assert cli(["audit", "--suspect", world / "student", "--protection", KGW, "--key-file", world / "key",
                 "--texts", world / "corpus", "--out", tmp_path / "a"]) == 0
    assert (tmp_path / "a" / "audit.json").is_file()


# ------------------------------------------------------------------ settings that disagree

@pytest.mark.parametrize("protection,key,warns", [
    (KGW, SECRET, None),
    ("gumbel:h=2", SECRET, "protection kgw:gamma=0.25,delta=2,h=1,hash=left (not gumbel:h=2)"),
    (KGW, "another-key", "key fingerprint"),
])
def test_detect_and_audit_warn_when_settings_differ_from_the_manifest(world, capsys, tmp_path, monkeypatch,
                                                                      protection, key, warns):
    monkeypatch.setenv("ANTIDISTILL_KEY", key)
    assert cli(["detect", world / "corpus", "--protection", protection, "--out", tmp_path / "v.jsonl"]) == 0
    err = capsys.readouterr().err
    assert cli(["audit", "--suspect", world / "student", "--protection", protection, "--texts",
                 world / "corpus", "--out", tmp_path / "a"]) == 0
    err_audit = capsys.readouterr().err
    for e in (err, err_audit):
        lines = [x for x in e.splitlines() if "warning" in x]
        if warns is None:
            assert lines == [], e
        else:
            assert len(lines) == 1 and warns in lines[0], e


# ------------------------------------------------------------------ the key stays secret

def _files_holding(root: Path, secret: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and secret in p.read_bytes()]


@pytest.mark.slow
def test_the_key_is_written_nowhere(world, tmp_path, capsys, monkeypatch):
    """run with [key] text, then generate/train/detect/audit with the key by file and by environment."""
    cache, res = tmp_path / "cache", tmp_path / "results"
    text_key, file_key, env_key = "run-secret-XYZ-1", "file-secret-XYZ-2", "env-secret-XYZ-3"
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(f"""preset = "smoke"
protections = ["none", "{KGW}"]
[key]
text = "{text_key}"
[teacher.demo]
preset = "tiny"
n_train = 64
steps = 4
batch_size = 8
n_test = 4
max_new_tokens = 16
[corpus]
n_prompts = 8
max_new_tokens = 16
batch_size = 8
[students]
max_steps = 1
batch_size = 8
[eval]
n_test = 4
max_new_tokens = 16
audit_texts = 4
wrong_keys = 1
attacks = []
n_boot = 20
""")
    assert cli(["run", cfg, "--out", res, "--cache-dir", cache, "--quiet"]) == 0
    (tmp_path / "key").write_text(file_key)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("ANTIDISTILL_CACHE", str(cache))
    for how in ("file", "env"):
        key_args = ["--key-file", tmp_path / "key"] if how == "file" else []
        if how == "env":
            monkeypatch.setenv("ANTIDISTILL_KEY", env_key)
        c, s = work / f"corpus-{how}", work / f"student-{how}"
        assert cli(["generate", "--teacher", "tiny", "--protection", KGW, *key_args, "--prompts", "4",
                     "--max-new-tokens", "8", "--out", c, "--quiet"]) == 0
        assert cli(["train", "--student", "tiny", "--corpus", c, "--out", s, "--max-steps", "1", "--quiet"]) == 0
        assert cli(["detect", c, "--protection", KGW, *key_args, "--out", work / f"det-{how}.jsonl"]) == 0
        assert cli(["audit", "--suspect", s, "--protection", KGW, *key_args, "--texts", c, "--out",
                     work / f"audit-{how}"]) == 0
    out, err = capsys.readouterr()
    for secret in (text_key, file_key, env_key):
        assert secret not in out + err
        for root in (cache, res, work):
            assert _files_holding(root, secret.encode()) == []
    assert json.loads((res / "config.json").read_text())["key"]["source"] == "text"


def test_detect_warns_when_the_tokenizer_differs_from_the_manifest(world, capsys, tmp_path):
    c = _edited_corpus(world, tmp_path, lambda m: m.update(tokenizer_fingerprint="0123456789abcdef"))
    base = ["detect", c, "--protection", KGW, "--key-file", world / "key", "--out", tmp_path / "v.jsonl"]
    assert cli(base) == 0
    assert "warning" not in capsys.readouterr().err  # no --tokenizer: nothing to compare
    assert cli(base + ["--tokenizer", world / "student"]) == 0
    warns = [x for x in capsys.readouterr().err.splitlines() if "warning" in x]
    assert len(warns) == 1 and "tokenizer 0123456789abcdef (not " in warns[0]


@pytest.mark.parametrize("bad", [lambda r: r["topk_ids"][0].__setitem__(0, 100000),
                                 lambda r: r["topk_ids"][0].__setitem__(0, "3"),
                                 lambda r: r["topk_logprobs"].pop()])
def test_logit_kd_refuses_malformed_stored_top_k(world, capsys, tmp_path, bad):
    c = tmp_path / "kd"
    assert cli(["generate", "--teacher", "tiny", "--prompts", "2", "--max-new-tokens", "4", "--topk-logprobs", "2",
                "--out", c, "--quiet"]) == 0
    capsys.readouterr()
    shard = c / "shard-00000.jsonl"
    lines = shard.read_text().splitlines()
    rec = json.loads(lines[0])
    bad(rec)
    lines[0] = json.dumps(rec)
    shard.write_text("\n".join(lines) + "\n")
    m = json.loads((c / "manifest.json").read_text())
    m["shards"][0]["sha256"] = hashlib.sha256(shard.read_bytes()).hexdigest()
    (c / "manifest.json").write_text(json.dumps(m))
    refused(capsys, ["train", "--student", "tiny", "--corpus", c, "--out", tmp_path / "s", "--mode", "logit-kd",
                     "--max-steps", "1"], "`topk_ids` / `topk_logprobs` must be matching")
    assert not (tmp_path / "s").exists()
