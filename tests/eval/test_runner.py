"""`antidistill run`: the smoke preset end to end, and the stage cache (rerun = no work; a changed
protection recomputes only its own branch)."""
import dataclasses
import json

import pandas as pd
import pytest

from antidistill.eval.cli import main
from antidistill.eval.core.config import as_dict, overlay
from antidistill.eval.experiment.config import SMOKE, RunConfig, load_config, preset_config
from antidistill.eval.experiment.runner import run_experiment
from antidistill.watermark.errors import UserError


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("runner-cache")


@pytest.fixture(scope="module")
def first_run(cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("results") / "smoke"
    rc = main(["run", "--preset", "smoke", "--out", str(out), "--cache-dir", str(cache), "--quiet"])
    assert rc == 0
    return out


@pytest.mark.slow
def test_smoke_end_to_end(first_run):
    out = first_run
    for name in ("report.md", "config.json", "run.json", "frontier.png", "roc.png", "radioactivity_reading.png",
                 "teacher_quality.csv", "detectability.csv", "radioactivity.csv", "transfer.csv", "frontier.csv"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    for section in ("## Frontier", "## Radioactivity audit", "## Detectability", "## Teacher quality",
                    "## Capability transfer", "![frontier](frontier.png)"):
        assert section in report
    assert "RADIOACTIVE" in report or "NOT DETECTED" in report
    meta = json.loads((out / "run.json").read_text())
    assert meta["versions"]["torch"] and meta["seed"] == 0 and len(meta["key_fingerprint"]) == 16
    assert meta["training_seeds"] == [0, 1] and meta["machine"]["cpu_model"] and meta["machine"]["torch_threads"] >= 1
    assert set(meta["stage_seconds"]) >= {"teacher", "corpora", "students", "evaluations"}
    assert "## What carries over" in report and "p per seed 0, 1:" in report
    assert meta["stage_threads"]["evaluations"] >= 1 and meta["threads"].startswith("auto")
    written = json.loads((out / "config.json").read_text())
    assert written["key"] == {"fingerprint": meta["key_fingerprint"], "source": "demo", "file": ""}
    assert {**written, "key": as_dict(preset_config("smoke"))["key"]} == as_dict(preset_config("smoke"))
    audit = pd.read_csv(out / "radioactivity.csv")
    assert set(audit.key_kind) == {"key", "wrong key"} and set(audit.student) == {"raw", audit.protection[0]}
    assert set(audit.seed) == {0, 1}
    transfer = pd.read_csv(out / "transfer.csv")
    assert set(transfer.n_seeds) == {2} and transfer.p_vs_raw_seeds.astype(str).str.split().str.len().eq(2).all()
    # no weights or caches in results
    assert not list(out.rglob("*.safetensors")) and not list(out.rglob("*.bin"))


@pytest.mark.slow
def test_rerun_does_no_work_and_changed_protection_reruns_only_its_branch(first_run, cache, tmp_path):
    cfg = preset_config("smoke")
    again = run_experiment(cfg, tmp_path / "again", cache_dir=cache, quiet=True)
    assert again["log"].computed() == []
    # Same numbers from the cache.
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again" / "transfer.csv"),
                                  pd.read_csv(first_run / "transfer.csv"))

    old, new = cfg.protections[1], "kgw:gamma=0.25,delta=3,h=1,hash=left"
    cfg = dataclasses.replace(cfg, protections=(cfg.protections[0], new))
    changed = run_experiment(cfg, tmp_path / "changed", cache_dir=cache, quiet=True)
    log = changed["log"]
    assert log.computed("teacher") == []
    assert sorted(log.computed("corpora")) == sorted([f"{new} (train)", f"{new} (audit)"])
    assert sorted(log.computed("students")) == [f"{new} (seed 0)", f"{new} (seed 1)"]
    evals = log.computed("evaluations")
    assert not any(e.startswith(("grade base", "grade raw")) for e in evals) and f"grade {new} (seed 1)" in evals
    assert all(old not in e for e in evals)
    # the raw corpus and raw students were reused
    assert "none (train)" not in log.computed() and not any(e.startswith("none") for e in log.computed("students"))


@pytest.mark.slow
def test_corpora_made_by_parallel_workers_match_the_serial_ones(first_run, cache, tmp_path):
    import shutil

    from antidistill.eval.core.jobs import Scheduler
    from antidistill.eval.experiment.runner import Runner
    from antidistill.students.corpus import read_corpus

    other = tmp_path / "cache"  # the smoke teacher and tokenizer copied, every corpus made anew
    for d in cache.iterdir():
        if d.name == "teachers" or d.name.startswith("tokenizer-"):
            shutil.copytree(d, other / d.name)
    cfg = overlay(RunConfig, SMOKE, {"students": {"workers": 2}})
    parallel = Runner(cfg, tmp_path / "out", cache_dir=other, quiet=True)
    prots = list(parallel.lab.protections.values())
    Scheduler(2, parallel.log).run([parallel.lab.corpus_job(p, "train") for p in prots])
    events = [(e["item"], e["status"]) for e in parallel.log.events if e["stage"] == "corpora"]
    assert sorted(events) == sorted((f"{p.spec} (train)", "computed") for p in prots)  # once each, by a worker
    serial = Runner(preset_config("smoke"), tmp_path / "o2", cache_dir=cache, quiet=True)
    for p in prots:
        mine, ref = read_corpus(parallel.lab.corpus(p)).records, read_corpus(serial.lab.corpus(p)).records
        # Same prompts, in order, and complete; the sampled tokens are not compared: the worker ran on one
        # thread and the serial run on the machine's default, and kernels may differ in the last bits.
        assert [r["prompt"] for r in mine] == [r["prompt"] for r in ref] and len(mine) == 96


def test_quiet_output_has_no_library_chatter(first_run, cache, tmp_path, capfd):
    """A rerun prints one bar per stage and the results table: no "Loading weights", no log dicts."""
    assert main(["run", "--preset", "smoke", "--out", str(tmp_path / "o"), "--cache-dir", str(cache)]) == 0
    out, err = capfd.readouterr()
    assert "Loading weights" not in err + out and "{'loss'" not in err + out
    for k, stage in enumerate(("teacher", "corpora", "students", "evaluations", "report"), start=1):
        assert f"[{k}/5] {stage}" in err
    assert "raw" in out and "report.md" in out


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('protections = ["none"]\n[students]\nprest = "tiny"\n')
    with pytest.raises(UserError, match="unknown config key students.'prest'"):
        load_config(bad)
    bad.write_text("this is = = not toml")
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(UserError, match="unknown preset"):
        load_config(None, "nope")
    good = tmp_path / "mine.toml"
    good.write_text('preset = "smoke"\nalpha = 0.01\n[corpus]\nn_prompts = 10\n')
    cfg = load_config(good)
    assert cfg.name == "mine" and cfg.alpha == 0.01 and cfg.corpus.n_prompts == 10
    assert cfg.corpus.max_new_tokens == preset_config("smoke").corpus.max_new_tokens
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    nonone = tmp_path / "nonone.toml"
    nonone.write_text('preset = "smoke"\nprotections = ["kgw"]\n')
    assert main(["run", str(nonone), "--cache-dir", str(tmp_path / "c")]) == 2
    cold = tmp_path / "cold.toml"
    cold.write_text('preset = "smoke"\n[eval]\naudit_temperature = -1\n')
    assert main(["run", str(cold), "--cache-dir", str(tmp_path / "c")]) == 2
    sweep2 = tmp_path / "sweep2.toml"
    sweep2.write_text('preset = "smoke"\nprotections = ["none", "kgw:gamma=[0.25,0.5],delta=[1,2]"]\n')
    assert main(["run", str(sweep2), "--cache-dir", str(tmp_path / "c")]) == 2
    noseeds = tmp_path / "noseeds.toml"
    noseeds.write_text('preset = "smoke"\n[students]\nseeds = 0\n')
    assert main(["run", str(noseeds), "--cache-dir", str(tmp_path / "c")]) == 2
