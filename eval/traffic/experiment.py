"""`antidistill traffic run`: simulate, fit, calibrate, detect, time to detection, evasion, report.

One simulated legitimate population split at random by account into three disjoint sets: training
traffic (the classifier's negatives, the MMD reference), calibration traffic (every p-value) and the
legitimate part of the evaluation traffic, to which the campaigns (simulated separately) are added;
its labels reach only metrics.py. A random split makes calibration and evaluated legitimate accounts
exchangeable, the condition the conformal p-values rest on (calibrate.py); three separately seeded
logs were not (each seed draws its own prompt cores, classes and households). Logs are written as
Parquet and read back through DuckDB, as a user's own log would be.

The slow artifacts (the simulated logs, the time-to-detection, evasion and per-seed null-split
tables) live in the content-addressed store under cache/traffic/, each named by a hash of exactly
the settings it depends on, so a run killed in a later stage, or a config changed elsewhere, reuses
them.
"""
from __future__ import annotations

import json
import platform
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from antidistill.students.cache import cache_root, ensure_out_dir
from antidistill.watermark.errors import atomic_write

from ..core.config import as_dict
from ..core.jobs import Stages
from ..core.store import Store
from . import calibrate as C
from . import evasion, metrics
from .config import TrafficConfig
from .detectors.combined import Suite, campaigns, thresholds as score_thresholds
from .null_split import null_split
from .report import write_report
from .schema import strip_labels
from .simulate import DAY, EPOCH0, simulate
from .store import connect, read_log, write_log

LAYOUT = 3  # bump when the stored artifacts change meaning: 2 = one legitimate population split, 3 = one folder per artifact
LOGS = ("train", "calibration", "evaluation")
TABLE = "table.parquet"


def simulate_logs(cfg: TrafficConfig, work: Path) -> dict[str, Path]:
    """train / calibration / evaluation logs: one legitimate population (seed + 100) split at random by
    account (train_accounts, calibration_accounts, the rest: sim.n_legit), campaigns (seed) added to
    the evaluation. The legitimate logs do not depend on the campaign settings."""
    n_tr, n_ca = cfg.train_accounts, cfg.calibration_accounts
    world = simulate(cfg.sim_config(n_legit=cfg.sim.n_legit + n_tr + n_ca, n_campaigns=0, seed=cfg.seed + 100,
                                    prefix="l"))
    ids = np.sort(world["account_id"].unique())
    ids = ids[np.random.default_rng(cfg.seed).permutation(len(ids))]
    part = {"train": ids[:n_tr], "calibration": ids[n_tr:n_tr + n_ca], "evaluation": ids[n_tr + n_ca:]}
    logs = {k: world[world["account_id"].isin(v)] for k, v in part.items()}
    if cfg.sim.n_campaigns:
        camp = simulate(cfg.sim_config(n_legit=0, seed=cfg.seed, prefix="e"))
        logs["evaluation"] = pd.concat([logs["evaluation"], camp], ignore_index=True).sort_values(
            "timestamp", kind="stable")
    return {k: write_log(v.reset_index(drop=True), work / f"{k}.parquet") for k, v in logs.items()}


def logs_inputs(cfg: TrafficConfig) -> dict:
    """What the simulated logs depend on."""
    return {"seed": cfg.seed, "sim": as_dict(cfg.sim), "train_accounts": cfg.train_accounts,
            "calibration_accounts": cfg.calibration_accounts}


def traffic_store(cache_dir=None) -> Store:
    return Store(cache_root(cache_dir) / "traffic", version=LAYOUT)


def simulated_logs(cfg: TrafficConfig, store: Store) -> dict[str, Path]:
    """The run's three logs from the store, simulated first if absent (all three or none)."""
    folder = store.build("simulate", "simulated logs", "logs", logs_inputs(cfg), lambda tmp: simulate_logs(cfg, tmp))
    return {k: folder / f"{k}.parquet" for k in LOGS}


def stored_table(store: Store, stage: str, item: str, inputs: dict, make: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """The table of (stage, inputs) from the store, else made now and stored all or nothing."""
    made = []

    def build(tmp: Path) -> None:
        made.append(make())
        write_log(made[0], tmp / TABLE)

    folder = store.build(stage, item, stage.replace(" ", "_"), inputs, build)
    return made[0] if made else pd.read_parquet(folder / TABLE)


class TrafficRun:
    """One run of `antidistill traffic run`: owns its checked config, the store of slow artifacts, the
    stage timing (one progress bar per stage), the DuckDB connection (one thread: the per-core
    figures) and the fitted, calibrated detector suite; `run` writes the results folder."""

    def __init__(self, cfg: TrafficConfig, out: Path, cache_dir=None, quiet: bool = False):
        self.cfg, self.out = cfg, Path(out)
        self.store = traffic_store(cache_dir)
        self.stages = Stages(quiet)
        self.con = connect(threads=1)
        self.alpha0 = min(cfg.alphas, key=lambda a: abs(a - 1e-3))  # the curves' operating point
        self.suite_inputs = {"logs": logs_inputs(cfg), "detectors": as_dict(cfg.detectors), "alpha": self.alpha0}

    def run(self) -> dict:
        t_all = time.perf_counter()
        ensure_out_dir(self.out)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn convergence and future warnings: library chatter
            logs, tables = self.measure()
        meta = {"config": as_dict(self.cfg), "alpha_curves": self.alpha0, "stage_seconds": self.stages.seconds,
                "reused_from_cache": [e["item"] for e in self.store.log.events if e["status"] == "cached"],
                "computed": self.store.log.computed(),
                # for `python -m antidistill.eval.traffic.shift_windows LOGDIR`; relative: no path of this machine
                "cached_logs": str(self.logs_folder.relative_to(self.store.root.parent)),
                "wall_seconds": round(time.perf_counter() - t_all, 1),
                "sizes": {k: {"requests": len(v), "accounts": int(v["account_id"].nunique())} for k, v in logs.items()},
                "python": platform.python_version(), "platform": platform.platform(), "threads": 1}
        with self.stages.stage("report") as bar:
            write_report(self.out, self.cfg, tables, meta)
            bar.update(1)
        meta.update(stage_seconds=dict(self.stages.seconds), stage_cpu_seconds=dict(self.stages.cpu_seconds),
                    wall_seconds=round(time.perf_counter() - t_all, 1))
        with atomic_write(self.out / "run.json") as fh:
            json.dump(meta, fh, indent=2)
        return {"out": str(self.out), "meta": meta, "tables": tables}

    def measure(self) -> tuple[dict, dict]:
        cfg, con = self.cfg, self.con
        with self.stages.stage("simulate") as bar:
            paths = simulated_logs(cfg, self.store)
            logs = {k: read_log(p) for k, p in paths.items()}
            bar.update(1)
        self.logs_folder = paths["train"].parent
        ev = logs["evaluation"]
        C.check_legit_only(logs["calibration"], ev["account_id"].unique())
        C.check_legit_only(logs["train"], ev["account_id"].unique(), where="training traffic")
        with self.stages.stage("fit") as bar:
            self.suite = Suite(as_dict(cfg.detectors), seed=cfg.seed).fit(strip_labels(logs["train"]))
            bar.update(1)
        with self.stages.stage("calibrate") as bar:
            n_calib = self.suite.calibrate(strip_labels(logs["calibration"]), con)
            bar.update(1)
        with self.stages.stage("detect") as bar:
            scores = self.suite.detect(strip_labels(ev), con, self.alpha0)
            bar.update(1)
        tables = self.tables(ev, scores, n_calib)
        with self.stages.stage("time to detection", len(cfg.ttd_hours)) as bar:
            tables["ttd"] = stored_table(self.store, "time to detection", "ttd",
                                         {**self.suite_inputs, "ttd_hours": list(cfg.ttd_hours)},
                                         lambda: self.ttd(ev, scores, bar))
        levels = sum(len(getattr(cfg.evasion, k)) for k in evasion.KNOB_LABELS)
        with self.stages.stage("evasion", levels) as bar:
            tables["evasion"] = stored_table(self.store, "evasion", "evasion",
                                             {**self.suite_inputs, "evasion": as_dict(cfg.evasion)},
                                             lambda: evasion.sweep(cfg, self.suite, con, ev, self.alpha0, bar))
        tables["pivot"] = pivot_table(ev, cfg)
        with self.stages.stage("null split", len(cfg.null_split.seeds)) as bar:
            tables["null_split"] = self.null_split(bar)
        return logs, tables

    def tables(self, ev: pd.DataFrame, scores: pd.DataFrame, n_calib: int) -> dict:
        """The tables of the full evaluation log's scores."""
        thresholds = score_thresholds(scores, self.cfg.alphas)
        gt = metrics.truth(ev)
        return {"detection": metrics.detection_table(scores, gt, thresholds, n_calib),
                "collateral": metrics.collateral(scores, gt, self.alpha0),
                "roc": metrics.roc(scores, gt),
                "shift_windows": metrics.shift_windows(scores, gt, self.suite.p["mmd_min_n"]),
                "campaigns": campaigns(scores).merge(
                    scores.merge(gt, on="account_id").groupby("community")["campaign_id"]
                    .agg(lambda c: int(c.mode().iloc[0])).rename("majority_campaign_id"), on="community"),
                "thresholds": pd.DataFrame([{"detector": d, "alpha": a, "threshold": t}
                                            for d, by in thresholds.items() for a, t in by.items()])}

    def ttd(self, ev: pd.DataFrame, scores: pd.DataFrame, bar) -> pd.DataFrame:
        """The detectors rerun on the log's prefixes at each checkpoint (the whole log's scores last)."""
        checkpoints = []
        for h in self.cfg.ttd_hours:
            T = EPOCH0 + h * 3600
            prefix = ev[ev["timestamp"] <= T]
            checkpoints.append((T, self.suite.detect(strip_labels(prefix), self.con, self.alpha0)))
            bar.update(1)
        checkpoints.append((EPOCH0 + self.cfg.sim.days * DAY, scores))
        return metrics.time_to_detection(checkpoints, ev)

    def null_split(self, bar) -> pd.DataFrame:
        """The all-legitimate split, one stored table per seed."""
        ns, parts = self.cfg.null_split, []
        sim = {k: v for k, v in as_dict(self.cfg.sim).items() if k not in ("n_legit", "n_campaigns")}
        detectors = as_dict(self.cfg.detectors)
        for seed in ns.seeds:
            inputs = {"seed": seed, "accounts": ns.accounts, "alphas": list(ns.alphas), "detectors": detectors,
                      "sim": sim}
            parts.append(stored_table(self.store, "null split", f"null split seed {seed}", inputs,
                                      lambda: null_split(seed, ns.accounts, ns.alphas, detectors, sim)))
            bar.update(1)
        return pd.concat(parts, ignore_index=True)


def run_traffic(cfg: TrafficConfig, out: str | Path, cache_dir=None, quiet: bool = False) -> dict:
    return TrafficRun(cfg, Path(out), cache_dir, quiet).run()


def pivot_table(ev: pd.DataFrame, cfg: TrafficConfig) -> pd.DataFrame:
    """Share of traffic on the new model in the 24 h after its release, campaigns against legitimate users."""
    t0 = EPOCH0 + cfg.sim.pivot_day * DAY
    w = ev[(ev["timestamp"] > t0) & (ev["timestamp"] <= t0 + 2 * DAY)]
    w = w.assign(kind=(w["campaign_id"] >= 0).map({True: "campaign", False: "legitimate"}),
                 day=((w["timestamp"] - t0) // DAY + 1).astype(int), new=w["model"] == "model-b")
    return w.groupby(["kind", "day"], as_index=False)["new"].mean().rename(columns={"new": "new_model_share"})
