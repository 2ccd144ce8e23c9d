"""`antidistill traffic`: one-line errors with exit 2, detect on a user's CSV / JSONL log, the smoke run."""
import json

import pandas as pd
import pytest

from antidistill.eval.cli import main
from antidistill.eval.traffic.schema import strip_labels
from antidistill.eval.traffic.simulate import SimConfig, simulate

WORLD = dict(days=2.0, pivot_day=1.0, heavy_share=0.0, classroom_share=0.0, integrator_share=0.0)


@pytest.mark.parametrize("header, row, msg", [
    ("request_id,account_id,timestamp,model", "1,a,0,m", "missing column 'prompt'"),
    ("request_id,account_id,timestamp,prompt,model", "1,a,tomorrow,hi,m", "column 'timestamp' at row 1"),
])
def test_bad_columns_give_one_line_and_exit_2(tmp_path, capsys, header, row, msg):
    path = tmp_path / "log.csv"
    path.write_text(f"{header}\n{row}\n")
    assert main(["traffic", "detect", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_unknown_format_and_bad_config(tmp_path, capsys):
    (tmp_path / "log.txt").write_text("x")
    assert main(["traffic", "detect", str(tmp_path / "log.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "unknown format" in capsys.readouterr().err
    (tmp_path / "c.toml").write_text("[sim]\ncover_share = 2.0\n")
    assert main(["traffic", "run", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "cover_share" in err and err.count("\n") == 1


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_detect_on_a_user_log_without_the_simulator(tmp_path, capsys, fmt):
    log = strip_labels(simulate(SimConfig(**WORLD, seed=3, prefix="u", n_legit=80, n_campaigns=1,
                                          accounts_per_campaign=10, requests_per_account=30)))
    log["timestamp"] = pd.to_datetime(log["timestamp"], unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ref = strip_labels(simulate(SimConfig(**WORLD, seed=4, prefix="r", n_legit=200, n_campaigns=0)))
    path, rpath = tmp_path / f"log.{fmt}", tmp_path / f"ref.{fmt}"
    for df, p in ((log.drop(columns=["proxy"]), path), (ref, rpath)):
        if fmt == "csv":
            df.to_csv(p, index=False)
        else:
            df.to_json(p, orient="records", lines=True)
    out = tmp_path / "out"
    assert main(["traffic", "detect", str(path), "--reference", str(rpath), "--alpha", "0.01", "--out", str(out),
                 "--preset", "traffic-smoke"]) == 0
    acc = pd.read_csv(out / "accounts.csv")
    assert set(acc["account_id"]) == set(log["account_id"])
    assert {"cot", "templates", "coordination", "shift", "combined", "flag_combined"} <= set(acc.columns)
    assert "candidate campaigns" in capsys.readouterr().out


@pytest.mark.slow
def test_run_smoke_writes_a_complete_report(tmp_path):
    out = tmp_path / "r"
    assert main(["traffic", "run", "--preset", "traffic-smoke", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
                 "--quiet"]) == 0
    for name in ("report.md", "run.json", "detection.csv", "roc.csv", "roc_combined.png", "evasion.csv",
                 "evasion_cover_share.png", "ttd.csv", "collateral.csv"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "run.json").read_text())
    assert meta["wall_seconds"] > 0 and meta["config"]["name"] == "traffic-smoke"
    det = pd.read_csv(out / "detection.csv")
    assert set(det["detector"]) == {"cot", "templates", "coordination", "shift", "combined"}


def test_simulate_writes_a_parquet_log_with_ground_truth(tmp_path, capsys):
    from antidistill.eval.traffic.store import read_log

    out = tmp_path / "sim.parquet"
    assert main(["traffic", "simulate", "--preset", "traffic-smoke", "--legit-accounts", "60", "--campaigns", "1",
                 "--seed", "4", "--out", str(out)]) == 0
    log = read_log(out)
    assert {"campaign_id", "archetype", "payment_id", "network"} <= set(log.columns)
    assert (log["campaign_id"] == 0).any() and (log["campaign_id"] == -1).any()
    assert "requests" in capsys.readouterr().out
    assert main(["traffic", "simulate", "--out", str(tmp_path / "sim.csv")]) == 2


@pytest.mark.slow
def test_run_resumes_after_a_kill_in_a_later_stage(tmp_path, monkeypatch):
    """A run killed in the evasion stage, rerun: the logs and time to detection are taken from the
    store, not remade; a third run computes nothing, and a config differing only in the evasion
    sweep reuses everything else."""
    from antidistill.eval.core.config import overlay
    from antidistill.eval.traffic import config, evasion, experiment, metrics

    cfg = config.load(preset="traffic-smoke")

    def killed(*a, **k):
        raise KeyboardInterrupt("killed")

    real_sweep = evasion.sweep
    monkeypatch.setattr(evasion, "sweep", killed)
    with pytest.raises(KeyboardInterrupt):
        experiment.run_traffic(cfg, tmp_path / "r", cache_dir=tmp_path / "c", quiet=True)
    monkeypatch.setattr(evasion, "sweep", real_sweep)
    monkeypatch.setattr(experiment, "simulate_logs", killed)  # a second simulation or ttd would raise
    monkeypatch.setattr(metrics, "time_to_detection", killed)
    res = experiment.run_traffic(cfg, tmp_path / "r", cache_dir=tmp_path / "c", quiet=True)
    assert len(res["tables"]["evasion"]) > 0 and len(res["tables"]["ttd"]) > 0
    assert (tmp_path / "r" / "report.md").exists()
    assert res["meta"]["computed"] == ["evasion", "null split seed 0"]
    assert {"simulated logs", "ttd"} <= set(res["meta"]["reused_from_cache"])
    again = experiment.run_traffic(cfg, tmp_path / "r2", cache_dir=tmp_path / "c", quiet=True)
    assert again["meta"]["computed"] == []
    for name in ("detection", "ttd", "evasion", "null_split"):
        assert (tmp_path / "r" / f"{name}.csv").read_bytes() == (tmp_path / "r2" / f"{name}.csv").read_bytes(), name
    other = overlay(config.TrafficConfig, config.PRESETS["traffic-smoke"], {"evasion": {"cover_share": [0.5]}})
    assert experiment.run_traffic(other, tmp_path / "r3", cache_dir=tmp_path / "c", quiet=True)["meta"][
        "computed"] == ["evasion"]
