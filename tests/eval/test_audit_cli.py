"""`antidistill audit` on tiny students: one distilled on protected outputs, one on raw outputs.

The "teacher" is a randomly initialised tiny model sampling under a strong unigram watermark, so the
whole chain (corpus -> student -> audit) runs in well under a minute on a CPU. A unigram watermark
is caught in generation mode. Reading mode is exercised here for its nulls and evidence files: for
h = 0 it scores only tokens a text has not written yet, and this random teacher's high-entropy
texts have already written most green tokens, so it has little power here (see eval/measures/audit.py).
"""
import json

import pytest

from antidistill.eval.cli import main

PROTECTION = "unigram:gamma=0.5,delta=4"
SECRET = "audit-test-key"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from antidistill.students.protect.generate import generate_corpus
    from antidistill.students.training.distill import train_student
    from antidistill.students.models.presets import build_model
    from antidistill.watermark import Key

    root = tmp_path_factory.mktemp("audit")
    cache = root / "cache"
    key_file = root / "key"
    key_file.write_text(SECRET + "\n")
    teacher = build_model("tiny", seed=7, cache_dir=cache)
    key = Key.from_text(SECRET)
    common = dict(key=key, max_new_tokens=24, batch_size=32, shard_size=128, progress=False,
                  teacher_name="tiny-random", cache_dir=cache)
    generate_corpus(teacher, root / "prot", protection=PROTECTION, prompts=256, seed=0, **common)
    generate_corpus(teacher, root / "raw", protection="none", prompts=256, seed=0, **common)
    generate_corpus(teacher, root / "heldout", protection=PROTECTION, prompts=64, seed=1, **common)
    for name in ("prot", "raw"):
        train_student("tiny", root / name, root / f"student-{name}", max_steps=120, batch_size=16, lr=3e-3,
                      progress=False, cache_dir=cache, save_steps=1000)
    return root


def _audit(world, suspect, *extra, key_file=None):
    out = world / f"out-{suspect}-{len(extra)}"
    rc = main(["audit", "--suspect", str(world / suspect), "--protection", PROTECTION,
               "--key-file", str(key_file or world / "key"), "--texts", str(world / "heldout"),
               "--alpha", "1e-3", "--out", str(out), *extra])
    return rc, json.loads((out / "audit.json").read_text()), out


@pytest.mark.slow
def test_protected_student_is_radioactive(world, capsys, monkeypatch):
    monkeypatch.setenv("ANTIDISTILL_CACHE", str(world / "cache"))
    rc, ev, out = _audit(world, "student-prot", "--null-keys", "3", "--mode", "generation",
                         "--max-new-tokens", "24")
    line = capsys.readouterr().out
    assert rc == 0 and line.startswith("RADIOACTIVE")
    assert ev["verdict"] == "RADIOACTIVE" and ev["detection"]["log10_p"] < -4
    assert ev["detection"]["n_scored"] > 0 and ev["detection"]["dedup"] is True
    assert all(n["verdict"] == "NOT DETECTED" for n in ev["null_keys"])  # wrong keys
    assert (out / "audit_curve.png").stat().st_size > 1000 and (out / "audit_curve.csv").is_file()


@pytest.mark.slow
def test_raw_student_and_wrong_key_not_detected(world, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("ANTIDISTILL_CACHE", str(world / "cache"))
    rc, ev, _ = _audit(world, "student-raw")
    assert rc == 0 and ev["verdict"] == "NOT DETECTED" and ev["detection"]["log10_p"] > -3
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-key")
    rc, ev, _ = _audit(world, "student-prot", "--max-tuples", "50", key_file=wrong)
    assert ev["verdict"] == "NOT DETECTED" and ev["detection"]["n_scored"] <= 50
    assert "NOT DETECTED" in capsys.readouterr().out


@pytest.mark.slow
def test_generation_mode_with_filter_and_reading_evidence(world, capsys, monkeypatch):
    monkeypatch.setenv("ANTIDISTILL_CACHE", str(world / "cache"))
    rc, ev, _ = _audit(world, "student-prot", "--mode", "generation", "--max-new-tokens", "24",
                       "--filter-top", "400")
    assert rc == 0 and ev["mode"] == "generation" and ev["verdict"] == "RADIOACTIVE"
    rc, ev, _ = _audit(world, "student-raw", "--mode", "generation", "--max-new-tokens", "24")
    assert ev["verdict"] == "NOT DETECTED"
    rc, ev, out = _audit(world, "student-prot", "--null-keys", "2", "--reference", str(world / "student-raw"))
    assert rc == 0 and ev["mode"] == "reading" and ev["selection"] == "contrast"
    assert 0 < ev["detection"]["n_scored"] <= ev["detection"]["n_tuples"]
    assert len(ev["null_keys"]) == 2 and (out / "audit_curve.png").is_file()


def test_audit_bad_inputs(tmp_path, capsys):
    key = tmp_path / "k"
    key.write_text("k")
    assert main(["audit", "--suspect", "tiny", "--protection", "none", "--key-file", str(key),
                 "--texts", str(tmp_path)]) == 2
    assert "no detectable trace" in capsys.readouterr().err
    assert main(["audit", "--suspect", "tiny", "--protection", "kgw", "--key-file", str(key)]) == 2
    assert "reading mode needs --texts" in capsys.readouterr().err
    assert main(["audit", "--suspect", "tiny", "--protection", "kgw", "--key-file", str(key),
                 "--texts", str(tmp_path), "--selection", "contrast"]) == 2
    assert "needs --reference" in capsys.readouterr().err
    assert main(["audit", "--suspect", "tiny", "--protection", "kgw", "--key-file", str(key),
                 "--texts", str(tmp_path), "--alpha", "2"]) == 2
    assert "--alpha" in capsys.readouterr().err
