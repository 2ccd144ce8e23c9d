"""`antidistill traffic run`: simulate, fit, calibrate, detect, time to detection, evasion, report.

One simulated legitimate population split at random by account into three disjoint sets: training
traffic (the classifier's negatives, the MMD reference), calibration traffic (every p-value) and the
legitimate part of the evaluation traffic, to which the campaigns (simulated separately) are added;
its labels reach only metrics.py. A random split makes calibration and evaluated legitimate accounts
exchangeable, the condition the conformal p-values rest on (calibrate.py); three separately seeded
logs were not (each seed draws its own prompt cores, classes and households). Logs are written as
Parquet under the cache and read back through DuckDB, as a user's own log would be.
"""
from __future__ import annotations

import hashlib
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from antidistill.watermark.errors import atomic_write

from . import calibrate as C
from . import evasion, metrics
from .detectors.combined import Suite, campaigns, thresholds as score_thresholds
from .null_split import null_table
from .schema import strip_labels
from .simulate import DAY, EPOCH0, SimConfig, simulate
from .store import connect, read_log, write_log


def simulate_logs(cfg: dict, work: Path) -> dict[str, Path]:
    """train / calibration / evaluation logs: one legitimate population (seed + 100) split at random by
    account (train_accounts, calibration_accounts, the rest: sim.n_legit), campaigns (seed) added to
    the evaluation. The legitimate logs do not depend on the campaign settings."""
    s, n_tr, n_ca = cfg["sim"], cfg["train_accounts"], cfg["calibration_accounts"]
    world = simulate(SimConfig(**{**s, "n_legit": s["n_legit"] + n_tr + n_ca, "n_campaigns": 0},
                               seed=cfg["seed"] + 100, prefix="l"))
    ids = np.sort(world["account_id"].unique())
    ids = ids[np.random.default_rng(cfg["seed"]).permutation(len(ids))]
    part = {"train": ids[:n_tr], "calibration": ids[n_tr:n_tr + n_ca], "evaluation": ids[n_tr + n_ca:]}
    logs = {k: world[world["account_id"].isin(v)] for k, v in part.items()}
    if s["n_campaigns"]:
        camp = simulate(SimConfig(**{**s, "n_legit": 0}, seed=cfg["seed"], prefix="e"))
        logs["evaluation"] = pd.concat([logs["evaluation"], camp], ignore_index=True).sort_values(
            "timestamp", kind="stable")
    return {k: write_log(v.reset_index(drop=True), work / f"{k}.parquet") for k, v in logs.items()}


LAYOUT = 2  # bump when the stages' outputs change meaning: 2 = one legitimate population split, conformal p-values


def config_key(cfg: dict) -> str:
    """Stage outputs live under the hash of the whole config (and LAYOUT): another config never reuses them."""
    return hashlib.sha256(json.dumps({"layout": LAYOUT, **cfg}, sort_keys=True, default=str).encode()).hexdigest()[:16]


REUSED: list[str] = []  # stages the current run took from the cache (run.json says so beside its wall time)


def resumable(work: Path, name: str, make):
    """The table `name` from an earlier run of the same config, else made now and written atomically,
    so a run killed in a later stage skips this one when rerun."""
    path = work / f"{name}.parquet"
    if path.exists():
        REUSED.append(name)
        return pd.read_parquet(path)
    table = make()
    write_log(table, path)
    return table


def run_traffic(cfg: dict, out: str | Path, cache_dir=None, quiet: bool = False) -> dict:
    from antidistill.students.cache import cache_root, ensure_out_dir

    out = Path(out)
    ensure_out_dir(out)
    work = cache_root(cache_dir) / "traffic" / cfg["name"] / config_key(cfg)
    work.mkdir(parents=True, exist_ok=True)
    alpha0 = min(cfg["alphas"], key=lambda a: abs(a - 1e-3))  # the curves' operating point
    times, t_all = {}, time.perf_counter()
    say = (lambda m: None) if quiet else (lambda m: tqdm.write(f"traffic: {m}"))
    con = connect(threads=1)

    def stage(name):
        times[name] = time.perf_counter()
        say(name)

    def done(name):
        times[name] = round(time.perf_counter() - times[name], 2)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn convergence and future warnings: library chatter
        stage("simulate")
        paths = {k: work / f"{k}.parquet" for k in ("train", "calibration", "evaluation")}
        REUSED.clear()
        if not all(p.exists() for p in paths.values()):  # each log is written atomically
            paths = simulate_logs(cfg, work)
        else:
            REUSED.append("simulated logs")
        logs = {k: read_log(p) for k, p in paths.items()}
        done("simulate")
        ev = logs["evaluation"]
        C.check_legit_only(logs["calibration"], ev["account_id"].unique())
        C.check_legit_only(logs["train"], ev["account_id"].unique(), where="training traffic")
        stage("fit")
        suite = Suite(cfg["detectors"], seed=cfg["seed"]).fit(strip_labels(logs["train"]))
        done("fit")
        stage("calibrate")
        n_calib = suite.calibrate(strip_labels(logs["calibration"]), con)
        done("calibrate")
        stage("detect")
        scores = suite.detect(strip_labels(ev), con, alpha0)
        thresholds = score_thresholds(scores, cfg["alphas"])
        done("detect")
        gt = metrics.truth(ev)
        tables = {"detection": metrics.detection_table(scores, gt, thresholds, n_calib),
                  "collateral": metrics.collateral(scores, gt, alpha0),
                  "roc": metrics.roc(scores, gt),
                  "shift_windows": metrics.shift_windows(scores, gt, suite.p["mmd_min_n"]),
                  "campaigns": campaigns(scores).merge(
                      scores.merge(gt, on="account_id").groupby("community")["campaign_id"]
                      .agg(lambda c: int(c.mode().iloc[0])).rename("majority_campaign_id"), on="community"),
                  "thresholds": pd.DataFrame([{"detector": d, "alpha": a, "threshold": t}
                                              for d, by in thresholds.items() for a, t in by.items()])}
        stage("time to detection")
        def ttd():
            checkpoints = []
            for h in tqdm(cfg["ttd_hours"], desc="time to detection", disable=quiet, leave=False):
                T = EPOCH0 + h * 3600
                prefix = ev[ev["timestamp"] <= T]
                checkpoints.append((T, suite.detect(strip_labels(prefix), con, alpha0)))
            checkpoints.append((EPOCH0 + cfg["sim"]["days"] * DAY, scores))
            return metrics.time_to_detection(checkpoints, ev)

        tables["ttd"] = resumable(work, "stage_ttd", ttd)
        done("time to detection")
        stage("evasion")
        tables["evasion"] = resumable(work, "stage_evasion", lambda: evasion.sweep(cfg, suite, con, ev, alpha0, quiet))
        done("evasion")
        tables["pivot"] = pivot_table(ev, cfg)
        stage("null split")
        ns = cfg["null_split"]
        tables["null_split"] = resumable(work, "stage_null_split", lambda: null_table(
            [int(x) for x in ns["seeds"]], int(ns["accounts"]), ns["alphas"], cfg["detectors"],
            {k: v for k, v in cfg["sim"].items() if k not in ("n_legit", "n_campaigns")}))
        done("null split")
    stage("report")
    from .report import write_report

    meta = {"config": cfg, "alpha_curves": alpha0, "stage_seconds": times, "reused_from_cache": list(REUSED),
            "wall_seconds": round(time.perf_counter() - t_all, 1),
            "sizes": {k: {"requests": len(v), "accounts": int(v["account_id"].nunique())} for k, v in logs.items()},
            "python": platform.python_version(), "platform": platform.platform(), "threads": 1}
    write_report(out, cfg, tables, meta)
    done("report")
    meta["stage_seconds"] = times
    meta["wall_seconds"] = round(time.perf_counter() - t_all, 1)
    with atomic_write(out / "run.json") as fh:
        json.dump(meta, fh, indent=2)
    return {"out": str(out), "meta": meta, "tables": tables}


def pivot_table(ev: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """Share of traffic on the new model in the 24 h after its release, campaigns against legitimate users."""
    t0 = EPOCH0 + cfg["sim"]["pivot_day"] * DAY
    w = ev[(ev["timestamp"] > t0) & (ev["timestamp"] <= t0 + 2 * DAY)]
    w = w.assign(kind=(w["campaign_id"] >= 0).map({True: "campaign", False: "legitimate"}),
                 day=((w["timestamp"] - t0) // DAY + 1).astype(int), new=w["model"] == "model-b")
    return w.groupby(["kind", "day"], as_index=False)["new"].mean().rename(columns={"new": "new_model_share"})
