"""`antidistill run`: the smoke preset end to end, and the stage cache (rerun = no work; a changed
protection recomputes only its own branch)."""
import json

import pandas as pd
import pytest

from antidistill.eval.cli import main
from antidistill.eval.experiment.presets import load_config, preset_config
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
    written = json.loads((out / "config.json").read_text())
    assert written["key"] == {"fingerprint": meta["key_fingerprint"], "source": "demo", "file": ""}
    assert {**written, "key": preset_config("smoke")["key"]} == preset_config("smoke")
    audit = pd.read_csv(out / "radioactivity.csv")
    assert set(audit.key_kind) == {"key", "wrong key"} and set(audit.student) == {"raw", audit.protection[0]}
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

    old = cfg["protections"][1]
    cfg["protections"][1] = new = "kgw:gamma=0.25,delta=3,h=1,hash=left"
    changed = run_experiment(cfg, tmp_path / "changed", cache_dir=cache, quiet=True)
    log = changed["log"]
    assert log.computed("teacher") == []
    assert sorted(log.computed("corpora")) == sorted([f"{new} (train)", f"{new} (audit)"])
    assert log.computed("students") == [new]
    evals = log.computed("evaluations")
    assert "grade base" not in evals and "grade raw" not in evals and f"grade {new}" in evals
    assert all(old not in e for e in evals)
    # the raw corpus and raw student were reused
    assert "none (train)" not in log.computed() and "none" not in log.computed("students")


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
    assert cfg["name"] == "mine" and cfg["alpha"] == 0.01 and cfg["corpus"]["n_prompts"] == 10
    assert cfg["corpus"]["max_new_tokens"] == preset_config("smoke")["corpus"]["max_new_tokens"]
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    nonone = tmp_path / "nonone.toml"
    nonone.write_text('preset = "smoke"\nprotections = ["kgw"]\n')
    assert main(["run", str(nonone), "--cache-dir", str(tmp_path / "c")]) == 2
    cold = tmp_path / "cold.toml"
    cold.write_text('preset = "smoke"\n[eval]\naudit_temperature = -1\n')
    assert main(["run", str(cold), "--cache-dir", str(tmp_path / "c")]) == 2
