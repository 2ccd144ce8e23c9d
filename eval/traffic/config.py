"""The typed config of `antidistill traffic run`, its presets, and TOML files merged over them.

    # my.toml                      antidistill traffic run --config my.toml
    preset = "traffic"
    seed = 3
    [sim]
    n_legit = 5000
    [evasion]
    cover_share = [0.0, 0.5, 0.9]

Every key is checked by eval.core.config (unknown keys, types, ranges; one line naming the key); the
rules that tie keys together are in the dataclasses' `__post_init__`. The simulator's settings and
their defaults are SimConfig's (simulate.py) and the detectors' are PARAMS (detectors/combined.py):
the `sim` and `detectors` tables are generated from them, not copied.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

from antidistill.watermark.errors import UserError

from ..core.config import as_dict, check_name, from_presets, setting
from . import calibrate as C
from .detectors.combined import PARAMS
from .simulate import SimConfig

SEED_MAX = 2**31 - 1  # the run adds offsets (calibration world + 100, evasion levels + 1000 + i) below numpy's 2**32
KNOBS = ("paraphrase_rate", "jitter_s", "accounts_per_campaign", "requests_per_account", "cover_share")
MAX_ACCOUNTS = SimConfig.LIMITS["n_legit"]
UNIT_OPEN = dict(lo=0, hi=1, lo_open=True, hi_open=True)


def _sim_table():
    """SimConfig's fields less the per-log ones (seed, prefix), same types and defaults; checked by
    SimConfig.check in TrafficConfig (it needs the run's seed)."""
    hints = typing.get_type_hints(SimConfig)
    cls = dataclasses.make_dataclass(
        "SimSettings", [(f.name, hints[f.name], field(default=f.default)) for f in dataclasses.fields(SimConfig)
                        if f.name not in ("seed", "prefix")], frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = ("The [sim] table: the simulated world of the run (simulate.SimConfig's settings and defaults, "
                   "less seed and prefix, which the run sets per log).")
    return cls


def _detectors_table():
    """PARAMS as fields: the three rates lie in (0, 1), the counts, windows and sizes are >= 1."""
    rates = ("lsh_threshold", "min_overlap", "request_rate")
    cls = dataclasses.make_dataclass(
        "DetectorSettings", [(k, type(v), setting(v, **(UNIT_OPEN if k in rates else dict(lo=1))))
                             for k, v in PARAMS.items()], frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = "The [detectors] table: the settings of detectors/combined.Suite (defaults: PARAMS)."
    return cls


SimSettings = _sim_table()
DetectorSettings = _detectors_table()


def _nonempty(obj, names, where: str = "") -> None:
    for k in names:
        if not getattr(obj, k):
            raise UserError(f"config key {where}{k} must list at least one value")


@dataclass(frozen=True)
class Evasion:
    """The [evasion] table: each knob's levels for the robustness curves (evasion.py), the number of
    campaigns simulated per level and the legitimate background they are mixed into."""

    background_accounts: int = setting(1000, lo=1, hi=MAX_ACCOUNTS)
    n_campaigns: int = setting(3, lo=1)
    paraphrase_rate: tuple[float, ...] = setting((0.0, 0.3, 0.6, 1.0), lo=0, hi=1)
    jitter_s: tuple[float, ...] = setting((20.0, 300.0, 1800.0, 7200.0), lo=0)
    accounts_per_campaign: tuple[int, ...] = setting((5, 10, 40, 160), lo=1)
    requests_per_account: tuple[int, ...] = setting((10, 30, 150, 500), lo=1)
    cover_share: tuple[float, ...] = setting((0.1, 0.5, 0.8, 0.95), lo=0, hi=1)

    def __post_init__(self):
        _nonempty(self, KNOBS, "evasion.")


@dataclass(frozen=True)
class NullSplit:
    """The [null_split] table: an all-legitimate log of `accounts` split in two by account, per seed,
    flagged at each alpha (null_split.py: the achieved FPR)."""

    seeds: tuple[int, ...] = setting((0, 1, 2), lo=0, hi=SEED_MAX)
    accounts: int = setting(2400, lo=40, hi=100_000)
    alphas: tuple[float, ...] = setting((1e-2, 5e-2), **UNIT_OPEN)

    def __post_init__(self):
        _nonempty(self, ("seeds", "alphas"), "null_split.")
        half = self.accounts // 2  # the reference half; a quarter of it trains, the rest calibrates
        for a in self.alphas:
            C.check_alpha(a, half - max(1, half // 4), "config key null_split.alphas:")


@dataclass(frozen=True)
class TrafficConfig:
    """The settings of one `antidistill traffic run`: the simulated world, the three disjoint sets of
    legitimate accounts (training, calibration, evaluation), the alphas, the detectors, the time-to-
    detection checkpoints, the evasion sweep and the all-legitimate split. Owns the rules across keys:
    every simulation the run will make is within SimConfig's limits, and every alpha is resolvable by
    its calibration set."""

    name: str = "traffic"
    seed: int = setting(1, lo=0, hi=SEED_MAX)  # the reported run's seed; detector settings were chosen on seed 0
    sim: SimSettings = SimSettings()
    calibration_accounts: int = setting(3000, lo=10, hi=MAX_ACCOUNTS)  # set the thresholds (disjoint from evaluation)
    train_accounts: int = setting(500, lo=10, hi=MAX_ACCOUNTS)  # the classifier and the MMD reference learn from them
    alphas: tuple[float, ...] = setting((1e-3, 1e-2, 5e-2), **UNIT_OPEN)  # each >= 1 / (calibration_accounts + 1)
    detectors: DetectorSettings = DetectorSettings()
    # checkpoints (hours from the log's start) for time to detection
    ttd_hours: tuple[float, ...] = setting((6.0, 12.0, 24.0, 36.0, 48.0, 72.0, 96.0, 120.0), lo=0)
    evasion: Evasion = Evasion()
    null_split: NullSplit = NullSplit()

    def __post_init__(self):
        check_name(self.name)
        _nonempty(self, ("alphas", "ttd_hours"))
        if self.sim.n_legit < 10:
            raise UserError(f"config key sim.n_legit must be >= 10 (the evaluation's legitimate accounts), "
                            f"got {self.sim.n_legit!r}")
        self.sim_config(seed=self.seed).check()
        world = self.sim.n_legit + self.train_accounts + self.calibration_accounts
        if world > MAX_ACCOUNTS:
            raise UserError(f"config keys sim.n_legit + train_accounts + calibration_accounts ({world:,}) must be "
                            f"<= {MAX_ACCOUNTS:,} (one legitimate population is simulated and split)")
        for a in self.alphas:
            C.check_alpha(a, self.calibration_accounts, "config key alphas:")
        for k in KNOBS:  # exactly the simulations the sweep will make
            for v in getattr(self.evasion, k):
                try:
                    self.sim_config(**{k: v, "n_legit": 0, "n_campaigns": self.evasion.n_campaigns}).check()
                except UserError as err:
                    raise UserError(f"config key evasion.{k} = {v!r}: {err}") from None

    def sim_config(self, **changes) -> SimConfig:
        """The simulator's config: the [sim] table with `changes` (seed, prefix, or a setting) on top."""
        return SimConfig(**{**as_dict(self.sim), **changes})


PRESETS = {  # overrides of the TrafficConfig defaults
    "traffic": {},
    "traffic-smoke": {"name": "traffic-smoke",
                      "sim": {"n_legit": 300, "n_campaigns": 2, "accounts_per_campaign": 10, "requests_per_account": 40,
                              "days": 3.0, "pivot_day": 1.5},
                      "calibration_accounts": 300, "train_accounts": 200, "ttd_hours": [24.0], "alphas": [1e-2, 5e-2],
                      "null_split": {"seeds": [0], "accounts": 400},
                      "detectors": {"mmd_perm": 50},
                      "evasion": {"background_accounts": 100, "n_campaigns": 2, "paraphrase_rate": [0.3, 1.0],
                                  "jitter_s": [20.0, 3600.0], "accounts_per_campaign": [5, 10],
                                  "requests_per_account": [10, 40], "cover_share": [0.1, 0.9]}},
}


def load(path: str | Path | None = None, preset: str | None = None) -> TrafficConfig:
    """The preset (default `traffic`), or the TOML file at `path` over its own `preset` key (else
    `preset`); a file without `name` is named after its stem. Errors name the file and the key."""
    return from_presets(TrafficConfig, PRESETS, path, preset, default="traffic")
