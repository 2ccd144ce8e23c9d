"""`antidistill traffic`: every careless input is one line, exit 2, no traceback, nothing written (issue 17)."""
import json

import pandas as pd
import pytest

from antidistill.eval.cli import main
from antidistill.eval.traffic.store import read_log

T0 = 1_767_225_600  # 2026-01-01 UTC


def _rows(n, prefix="a", accounts=4, t0=T0):
    return [{"request_id": f"{prefix}r{i}", "account_id": f"{prefix}{i % accounts}", "timestamp": t0 + 60 * i,
             "prompt": f"question number {i} about topic {i % 7}", "model": "m"} for i in range(n)]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _one_line_exit_2(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


@pytest.mark.parametrize("value, needles", [
    (1e300, ["row 4", "1e+300", "2000-01-01"]),
    (T0 * 1000, ["row 4", str(T0 * 1000), "milliseconds"]),
    ("1938-05-01T00:00:00Z", ["row 4", "1938-05-01", "2000-01-01"]),
    ("2150-01-01T00:00:00Z", ["row 4", "2150-01-01", "2100-01-01"]),
    ("NaN", ["row 4", "NaN"]),
    ("2026-01-01T10:00:00+25:00", ["row 4", "+25:00"]),
    ("2026-01-01 10:00 PST", ["row 4", "PST"]),
    ("yesterday", ["row 4", "yesterday"]),
])
def test_bad_timestamp_is_named_at_its_row(tmp_path, capsys, value, needles):
    rows = _rows(6)
    rows[3]["timestamp"] = value
    log = _jsonl(tmp_path / "log.jsonl", rows)
    _one_line_exit_2(capsys, ["traffic", "detect", str(log), "--out", str(tmp_path / "o")], *needles)
    assert not (tmp_path / "o").exists()


def test_iso_time_without_a_zone_is_read_as_utc_with_one_warning(tmp_path):
    rows = _rows(6)
    for r in rows:
        r["timestamp"] = pd.Timestamp(r["timestamp"], unit="s").strftime("%Y-%m-%dT%H:%M:%S")
    with pytest.warns(UserWarning, match="without a time zone") as rec:
        log = read_log(_jsonl(tmp_path / "log.jsonl", rows))
    assert len(rec) == 1 and log["timestamp"].iloc[0] == T0


@pytest.mark.parametrize("column, value, needles", [
    ("request_id", 1, ["'request_id' repeats '1'"]),  # "1" in row 1 and 1 in row 2: one id
    ("prompt", True, ["'prompt'", "true/false"]),
    ("account_id", ["x", "y"], ["'account_id'", "list"]),
    ("network", False, ["'network'", "true/false"]),
])
def test_mistyped_columns_are_refused(tmp_path, capsys, column, value, needles):
    rows = _rows(4)
    rows[0]["request_id"] = "1"
    for r in rows[1:]:
        r[column] = value
    if column == "network":
        rows[0]["network"] = "n0"
    log = _jsonl(tmp_path / "log.jsonl", rows)
    _one_line_exit_2(capsys, ["traffic", "detect", str(log), "--out", str(tmp_path / "o")], *needles)
    assert not (tmp_path / "o").exists()


def test_bad_references_are_refused_before_any_work(tmp_path, capsys):
    log = _jsonl(tmp_path / "log.jsonl", _rows(20, "e"))
    out = tmp_path / "o"
    one = _jsonl(tmp_path / "one.jsonl", _rows(1, "r"))
    _one_line_exit_2(capsys, ["traffic", "detect", str(log), "--reference", str(one), "--out", str(out)],
                     "holds 1 account(s)", "at least 40")
    ref = pd.DataFrame(_rows(400, "r", accounts=100)).assign(campaign_id=-1)
    ref.loc[ref.index[-1], "campaign_id"] = 2  # one campaign row: the check must run before labels are stripped
    ref.to_json(tmp_path / "camp.jsonl", orient="records", lines=True)
    _one_line_exit_2(capsys, ["traffic", "detect", str(log), "--reference", str(tmp_path / "camp.jsonl"),
                              "--alpha", "0.05", "--out", str(out)], "legitimate only", "campaign_id 2")
    # every evaluated account appears in the reference: whichever part (train quarter or calibration) holds them
    both = pd.concat([pd.DataFrame(_rows(400, "r", accounts=100)), pd.DataFrame(_rows(20, "e"))])
    both.to_json(tmp_path / "overlap.jsonl", orient="records", lines=True)
    _one_line_exit_2(capsys, ["traffic", "detect", str(log), "--reference", str(tmp_path / "overlap.jsonl"),
                              "--alpha", "0.05", "--out", str(out)], "share 4 accounts")
    good = _jsonl(tmp_path / "good.jsonl", _rows(400, "r", accounts=100))
    _one_line_exit_2(capsys, ["traffic", "detect", str(log), "--reference", str(good), "--alpha", "0.001",
                              "--out", str(out)], "below the resolution", "75 calibration accounts")
    assert not out.exists()


def test_an_output_that_cannot_be_written_is_refused_before_anything_is_written(tmp_path, capsys):
    log = _jsonl(tmp_path / "log.jsonl", _rows(20, "e"))
    out = tmp_path / "o"
    (out / "campaigns.csv").mkdir(parents=True)
    _one_line_exit_2(capsys, ["traffic", "detect", str(log), "--out", str(out)], "campaigns.csv", "folder")
    assert sorted(p.name for p in out.iterdir()) == ["campaigns.csv"]  # accounts.csv not written


@pytest.mark.parametrize("argv, needles", [
    (["--legit-accounts", "1000000000000"], ["--legit-accounts", "2,000,000"]),
    (["--campaigns", "100000000"], ["--campaigns", "1,000"]),
])
def test_simulate_sizes_are_bounded(tmp_path, capsys, argv, needles):
    out = tmp_path / "sim.parquet"
    _one_line_exit_2(capsys, ["traffic", "simulate", "--out", str(out), *argv], *needles)
    assert not out.exists()


@pytest.mark.parametrize("toml, needles", [
    ("[sim]\nn_legit = 0\n", ["sim.n_legit", ">= 10"]),
    ("[sim]\ndays = 3.0\npivot_day = 9.0\n", ["pivot_day", "days"]),
    ("seed = 99999999999999\n", ["seed", "2147483647"]),
    ("calibration_accounts = 500\n", ["alphas", "below the resolution"]),
    ("[null_split]\naccounts = 100\nalphas = [0.001]\n", ["null_split.alphas", "below the resolution"]),
    ("[sim]\nn_legitt = 10\n", ["unknown config key sim.'n_legitt'", "n_legit"]),
    ("[detectors]\nmin_coaction = 2.5\n", ["detectors.min_coaction", "integer", "2.5"]),
    ("[detectors]\nlsh_threshold = 1.0\n", ["detectors.lsh_threshold", "0 < x < 1"]),
    ("[evasion]\njitter_s = [-1.0]\n", ["evasion.jitter_s", "0 <= x", "-1.0"]),
    ("[evasion]\ncover_share = []\n", ["evasion.cover_share", "at least one"]),
    ("[evasion]\naccounts_per_campaign = [200000]\n", ["evasion.accounts_per_campaign", "100,000"]),
    ("[evasion]\nn_campaigns = 1000\nrequests_per_account = [100000]\n", ["evasion.requests_per_account",
                                                                          "above the limit"]),
    ("alphas = [0.5, 1.0]\n", ["alphas", "0 < x < 1"]),
    ("ttd_hours = \"24\"\n", ["ttd_hours", "list"]),
    ('preset = "trafic"\n', ["unknown preset 'trafic'"]),
    ("[null_split]\nseeds = [1.5]\n", ["null_split.seeds", "integer"]),
])
def test_traffic_configs_out_of_range_are_refused(tmp_path, capsys, toml, needles):
    (tmp_path / "c.toml").write_text(toml)
    _one_line_exit_2(capsys, ["traffic", "run", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "r"),
                              "--cache-dir", str(tmp_path / "cache")], *needles)
    assert not (tmp_path / "r").exists() and not (tmp_path / "cache").exists()
