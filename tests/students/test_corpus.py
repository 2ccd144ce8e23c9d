import json
import os
import signal
import subprocess
import sys
import time

import pytest

from antidistill.students.protect.generate import generate_corpus

from antidistill.students.tasks.prompts import load_prompts

from antidistill.students.corpus import read_corpus
from antidistill.watermark import parse_protection
from antidistill.watermark.errors import UserError

from .conftest import KGW


def _gen(out, **kw):
    args = dict(protection="none", prompts=12, max_new_tokens=16, batch_size=4, shard_size=4, progress=False,
                teacher_name="tiny")
    teacher = kw.pop("teacher", "tiny")
    args.update(kw)
    return generate_corpus(teacher, out, **args)


def test_records_manifest_and_pairing(corpora, key):
    raw, kgw = read_corpus(corpora["raw"]), read_corpus(corpora["kgw"])
    m = kgw.manifest
    assert m["protection"] == parse_protection(KGW).spec
    assert m["key_fingerprint"] == key.fingerprint and raw.manifest["key_fingerprint"] is None
    assert key.secret.decode() not in json.dumps(m)  # the key itself never lands on disk
    assert m["complete"] and m["counts"]["records"] == 64 == len(kgw)
    # raw and protected line up prompt by prompt
    assert [r["id"] for r in raw.records] == [r["id"] for r in kgw.records]
    assert raw.prompts == kgw.prompts
    for rec in kgw.records:
        assert {"id", "prompt", "completion", "prompt_ids", "completion_ids", "stop", "skill", "answer"} <= set(rec)
        n = len(rec["completion_ids"]) + (rec["stop"] == "eos")
        assert len(rec["topk_ids"]) == len(rec["topk_logprobs"]) == n
        assert all(len(k) == 4 for k in rec["topk_ids"])
        # the sampled token is among the stored top-k most of the time, and log-probs are sorted
        assert all(a >= b for a, b in zip(rec["topk_logprobs"][0], rec["topk_logprobs"][0][1:]))


def test_protected_corpus_is_detected_raw_is_not(corpora, key):
    det = parse_protection(KGW).detector(key)
    raw, kgw = read_corpus(corpora["raw"]), read_corpus(corpora["kgw"])
    d_kgw = det.detect(kgw.sequences, kgw.prompts)
    d_raw = det.detect(raw.sequences, raw.prompts)
    assert d_kgw.log10_p < -5, d_kgw  # 64 short records; a 480-token vocabulary limits distinct bigrams
    assert d_raw.log10_p > -2, d_raw


def test_rerun_of_finished_corpus_is_a_no_op(tmp_path):
    m1 = _gen(tmp_path / "c")
    before = {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()}
    m2 = _gen(tmp_path / "c")
    assert m1 == m2
    assert before == {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()}


def test_same_seed_same_corpus_other_seed_differs(tmp_path):
    _gen(tmp_path / "a", seed=1)
    _gen(tmp_path / "b", seed=1)
    _gen(tmp_path / "c", seed=2)
    shards = lambda d: [(d / f"shard-{i:05d}.jsonl").read_bytes() for i in range(3)]  # noqa: E731
    assert shards(tmp_path / "a") == shards(tmp_path / "b")
    assert shards(tmp_path / "a") != shards(tmp_path / "c")


@pytest.mark.slow
def test_kill_9_then_rerun_gives_the_uninterrupted_corpus(tmp_path):
    cmd = [sys.executable, "-m", "antidistill.eval.cli", "generate", "--teacher", "tiny", "--protection", KGW,
           "--prompts", "64", "--max-new-tokens", "48", "--batch-size", "4", "--shard-size", "4", "--quiet"]
    env = {**os.environ, "ANTIDISTILL_KEY": "kill-test-key"}
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run(cmd + ["--out", str(ref)], env=env, check=True, capture_output=True)
    proc = subprocess.Popen(cmd + ["--out", str(cut)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (cut / "shard-00002.jsonl").exists():
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = json.loads((cut / "manifest.json").read_text())
    assert not partial["complete"] and 0 < len(partial["shards"]) < 16, "the kill came too late to test resuming"
    run = subprocess.run(cmd + ["--out", str(cut)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    final = json.loads((cut / "manifest.json").read_text())
    assert final["complete"] and final["counts"]["records"] == 64
    a, b = read_corpus(ref), read_corpus(cut)
    assert a.records == b.records
    assert [s["sha256"] for s in a.manifest["shards"]] == [s["sha256"] for s in b.manifest["shards"]]
    assert not [p for p in cut.iterdir() if p.name.endswith(".tmp")]


def test_interrupted_shard_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    from antidistill.students.protect import sample as corpus

    calls = {"n": 0}
    real = corpus.generate_batch

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 4:  # in the middle of the second shard
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(corpus, "generate_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        _gen(tmp_path / "c", prompts=24, shard_size=8)
    files = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert files == ["manifest.json", "shard-00000.jsonl"]
    with pytest.raises(UserError, match="incomplete"):
        read_corpus(tmp_path / "c")
    monkeypatch.setattr(corpus, "generate_batch", real)
    _gen(tmp_path / "c", prompts=24, shard_size=8)
    _gen(tmp_path / "ref", prompts=24, shard_size=8)
    assert read_corpus(tmp_path / "c").records == read_corpus(tmp_path / "ref").records


def test_bad_corpora_are_refused(tmp_path):
    _gen(tmp_path / "c")
    shard = tmp_path / "c" / "shard-00001.jsonl"
    good = shard.read_bytes()
    shard.write_bytes(good[:-20])
    with pytest.raises(UserError, match="shard-00001.jsonl is corrupt"):
        read_corpus(tmp_path / "c")
    shard.unlink()
    with pytest.raises(UserError, match="shard-00001.jsonl is missing"):
        read_corpus(tmp_path / "c")
    # the same command regenerates exactly the missing shard
    _gen(tmp_path / "c")
    assert shard.read_bytes() == good
    (tmp_path / "c" / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="not a readable corpus manifest"):
        read_corpus(tmp_path / "c")
    with pytest.raises(UserError, match="no manifest.json"):
        read_corpus(tmp_path)


def test_other_settings_in_same_folder_are_refused(tmp_path):
    _gen(tmp_path / "c")
    with pytest.raises(UserError, match="temperature differ"):
        _gen(tmp_path / "c", temperature=0.7)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        _gen(tmp_path / "d")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(UserError, match="not writable"):
            _gen(locked / "c")
    finally:
        locked.chmod(0o700)


def test_unwritable_output_path_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot create output folder"):
        _gen(tmp_path / "file" / "c")


def test_prompt_files(tmp_path):
    (tmp_path / "p.txt").write_text("Add 1 and 2.\n\nSort 3 1 2.\n")
    recs, _ = load_prompts(str(tmp_path / "p.txt"))
    assert [r["prompt"] for r in recs] == ["Add 1 and 2.\n", "Sort 3 1 2.\n"]
    (tmp_path / "p.jsonl").write_text('{"id": "a", "prompt": "Add 1 and 2.\\n"}\n{"prompt": 3}\n')
    with pytest.raises(UserError, match="p.jsonl line 2"):
        load_prompts(str(tmp_path / "p.jsonl"))
    with pytest.raises(UserError, match="does not exist"):
        load_prompts(str(tmp_path / "none.txt"))
    with pytest.raises(UserError, match="positive"):
        load_prompts("0")


def test_protection_needs_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTIDISTILL_KEY", raising=False)
    with pytest.raises(UserError, match="no watermark key"):
        _gen(tmp_path / "c", protection=KGW)
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").iterdir())
