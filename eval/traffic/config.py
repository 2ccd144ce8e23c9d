"""Presets of `antidistill traffic run`, and TOML configs merged over them (validated, one line per error).

    # my.toml                      antidistill traffic run --config my.toml
    preset = "traffic"
    seed = 3
    [sim]
    n_legit = 5000
    [evasion]
    cover_share = [0.0, 0.5, 0.9]
"""
from __future__ import annotations

import copy
import math
import re
import tomllib
from pathlib import Path

from antidistill.watermark.errors import UserError, read_bytes

from . import calibrate as C
from .detectors.combined import PARAMS
from .simulate import SimConfig

SEED_MAX = 2**31 - 1  # the run adds offsets (calibration world + 100, evasion levels + 1000 + i) below numpy's 2**32
KNOBS = ("paraphrase_rate", "jitter_s", "accounts_per_campaign", "requests_per_account", "cover_share")
_SIM = {k: v for k, v in SimConfig().as_dict().items() if k not in ("seed", "prefix")}

DEFAULT = {
    "name": "traffic",
    "seed": 1,  # the reported run's seed; detector settings were chosen on seed-0 simulations
    "sim": _SIM,
    "calibration_accounts": 3000,  # legitimate accounts that set the thresholds (disjoint from evaluation)
    "train_accounts": 500,  # legitimate accounts the classifier and the MMD reference learn from
    "alphas": [1e-3, 1e-2, 5e-2],  # each must be >= 1 / (calibration_accounts + 1), the resolution (calibrate.py)
    "detectors": dict(PARAMS),
    "ttd_hours": [6.0, 12.0, 24.0, 36.0, 48.0, 72.0, 96.0, 120.0],  # checkpoints (hours from the log's start) for time to detection
    "evasion": {"background_accounts": 1000, "n_campaigns": 3,
                "paraphrase_rate": [0.0, 0.3, 0.6, 1.0], "jitter_s": [20.0, 300.0, 1800.0, 7200.0],
                "accounts_per_campaign": [5, 10, 40, 160], "requests_per_account": [10, 30, 150, 500],
                "cover_share": [0.1, 0.5, 0.8, 0.95]},
    # all-legitimate log of `accounts` split in two by account, per seed: the achieved FPR (null_split.py)
    "null_split": {"seeds": [0, 1, 2], "accounts": 2400, "alphas": [1e-2, 5e-2]},
}
PRESETS = {
    "traffic": {},
    "traffic-smoke": {"name": "traffic-smoke",
                      "sim": {"n_legit": 300, "n_campaigns": 2, "accounts_per_campaign": 10, "requests_per_account": 40,
                              "days": 3.0, "pivot_day": 1.5},
                      "calibration_accounts": 300, "train_accounts": 200, "ttd_hours": [24.0], "alphas": [1e-2, 5e-2],
                      "null_split": {"seeds": [0], "accounts": 400},
                      "detectors": {"mmd_perm": 50},
                      "evasion": {"background_accounts": 100, "n_campaigns": 2, "paraphrase_rate": [0.3, 1.0], "jitter_s": [20.0, 3600.0],
                                  "accounts_per_campaign": [5, 10], "requests_per_account": [10, 40],
                                  "cover_share": [0.1, 0.9]}},
}


def _kind(v) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}[type(v)]


def _merge(base: dict, over: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in base:
            raise UserError(f"unknown config key {where}{k!r}; valid keys here: {', '.join(base)}")
        d = base[k]
        if isinstance(d, dict):
            if not isinstance(v, dict):
                raise UserError(f"config key {where}{k} must be a table, got {v!r}")
            out[k] = _merge(d, v, f"{where}{k}.")
            continue
        number = isinstance(d, float) and isinstance(v, (int, float)) and not isinstance(v, bool)
        if not (number or type(v) is type(d)):
            raise UserError(f"config key {where}{k} must be {_kind(d)}, got {v!r}")
        if isinstance(v, list):
            if not v or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0
                                for x in v):
                raise UserError(f"config key {where}{k} must list finite numbers >= 0, got {v!r}")
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and (not math.isfinite(v) or v < 0):
            raise UserError(f"config key {where}{k} must be finite and >= 0, got {v!r}")
        out[k] = float(v) if number else copy.deepcopy(v)
    return out


def check(cfg: dict) -> dict:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", cfg["name"]):
        raise UserError(f"config key name {cfg['name']!r} must be a plain folder name (letters, digits, . _ -)")
    if not 0 <= cfg["seed"] <= SEED_MAX:
        raise UserError(f"config key seed must be an integer with 0 <= x <= {SEED_MAX}, got {cfg['seed']!r}")
    if cfg["sim"]["n_legit"] < 10:
        raise UserError(f"config key sim.n_legit must be >= 10 (the evaluation's legitimate accounts), "
                        f"got {cfg['sim']['n_legit']!r}")
    SimConfig(**cfg["sim"], seed=cfg["seed"]).check()
    if cfg["calibration_accounts"] < 10 or cfg["train_accounts"] < 10:
        raise UserError("config keys calibration_accounts and train_accounts must be >= 10")
    for k in ("calibration_accounts", "train_accounts"):
        SimConfig(n_legit=cfg[k], n_campaigns=0).check()  # the same bound as sim.n_legit
    for a in cfg["alphas"]:
        if not 0 < a < 1:
            raise UserError(f"config key alphas: {a!r} must lie in 0 < x < 1")
        C.check_alpha(a, cfg["calibration_accounts"], "config key alphas:")
    ns = cfg["null_split"]
    if not ns["seeds"] or any(int(x) != x or x > SEED_MAX for x in ns["seeds"]):
        raise UserError(f"config key null_split.seeds must list integers 0 <= x <= {SEED_MAX}, got {ns['seeds']!r}")
    if not 40 <= ns["accounts"] <= 100_000 or int(ns["accounts"]) != ns["accounts"]:
        raise UserError(f"config key null_split.accounts must be an integer with 40 <= x <= 100000, "
                        f"got {ns['accounts']!r}")
    half = int(ns["accounts"]) // 2
    for a in ns["alphas"]:
        if not 0 < a < 1:
            raise UserError(f"config key null_split.alphas: {a!r} must lie in 0 < x < 1")
        C.check_alpha(a, half - max(1, half // 4), "config key null_split.alphas:")
    d = cfg["detectors"]
    for k in ("lsh_threshold", "min_overlap", "request_rate"):
        if not 0 < d[k] < 1:
            raise UserError(f"config key detectors.{k} must lie in 0 < x < 1, got {d[k]!r}")
    for k in ("coaction_window", "min_coaction", "max_share", "mmd_window", "mmd_ref", "mmd_perm", "mmd_min_n"):
        if d[k] < 1:
            raise UserError(f"config key detectors.{k} must be >= 1, got {d[k]!r}")
    for k in KNOBS:
        SimConfig(**{**cfg["sim"], k: max(cfg["evasion"][k])}).check()
    if cfg["evasion"]["background_accounts"] < 1 or cfg["evasion"]["n_campaigns"] < 1:
        raise UserError("config keys evasion.background_accounts and evasion.n_campaigns must be >= 1")
    return cfg


def load(path: str | Path | None = None, preset: str | None = None) -> dict:
    name = preset or "traffic"
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    if path is None:
        return check(_merge(DEFAULT, PRESETS[name]))
    path = Path(path)
    try:
        data = tomllib.loads(read_bytes(path, "config file").decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid TOML ({err})") from None
    base = data.pop("preset", name)
    if base not in PRESETS:
        raise UserError(f"{path}: unknown preset {base!r}; valid presets: {', '.join(PRESETS)}")
    try:
        cfg = _merge(_merge(DEFAULT, PRESETS[base]), data)
        if "name" not in data:
            cfg["name"] = path.stem
        return check(cfg)
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
