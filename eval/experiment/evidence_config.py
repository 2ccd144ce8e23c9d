"""The `antidistill evidence` config: a run config plus the three findings' settings, and its presets.

`EVIDENCE` and `EVIDENCE_SMOKE` are partial override dicts over `EvidenceConfig`'s defaults; their
`run` table overrides the runner's default config, so a student trained on an unattacked corpus
with the runner's recipe is the runner's own cache entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from antidistill.students.attacks import parse_attacks
from antidistill.students.attacks.spec import MAX_STEPS
from antidistill.watermark import parse_protection
from antidistill.watermark.errors import UserError

from ..core.config import overlay, setting
from .config import MAX_SEEDS, SEED_MAX, RunConfig

KGW = "kgw:gamma=0.25,delta=2,h=1,hash=left"
GUMBEL = "gumbel:h=1"
ADS = "ads:lam=3"  # the frontier's strongest capability-denying point (DE 0.57 in results/frontier)
MODES = ("reading", "generation")


@dataclass(frozen=True)
class E1:
    """[e1] dilution: students on a fraction rho of protected records; clean ones under random keys."""

    protection: str = KGW
    rhos: tuple[float, ...] = setting((0.0, 0.1, 0.5, 1.0), lo=0, hi=1)
    modes: tuple[str, ...] = setting(MODES, choices=MODES)
    null_keys: int = setting(10000, lo=0)  # each clean (rho = 0) student also audited with this many random keys

    def __post_init__(self):
        if not self.rhos:
            raise UserError("e1.rhos: a list of protected fractions in [0, 1], got []")


@dataclass(frozen=True)
class E2:
    """[e2] fine-tuning away: each scheme's first-seed student fine-tuned on clean data for `steps`."""

    protections: tuple[str, ...] = (KGW, GUMBEL)
    # separate fine-tunes, each from the distilled weights
    steps: tuple[int, ...] = setting((0, 100, 400, 1600), lo=0, hi=MAX_STEPS)
    clean_records: int = setting(20000, lo=1)
    lr: float = setting(3e-4, lo=0, lo_open=True)


@dataclass(frozen=True)
class Denying:
    """[e4.denying]: the adaptive attacker against capability-denying protections (how much of the
    transfer the protection took away the attack wins back)."""

    protections: tuple[str, ...] = ()
    attacks: tuple[str, ...] = ()

    def __post_init__(self):
        for a in parse_attacks(list(self.attacks)):
            if a.stage != "corpus":
                raise UserError(f"e4.denying.attacks: {a.spec} acts on the {a.stage}; list corpus attacks here")


@dataclass(frozen=True)
class E4:
    """[e4] attacks side by side: each corpus attack's student and each decode attack's audit."""

    protection: str = KGW
    corpus_attacks: tuple[str, ...] = ()
    decode_attacks: tuple[str, ...] = ()
    denying: Denying = field(default_factory=Denying)

    def __post_init__(self):
        parse_attacks(list(self.corpus_attacks + self.decode_attacks))


@dataclass(frozen=True)
class EvidenceConfig:
    """One `antidistill evidence` run: the runner config its corpora and students come from, the
    student seeds, the three findings and the attacker's clean-data seed. Owns the checks that tie
    them (every protection a finding names is among run.protections; seeds distinct and in range)."""

    name: str = "evidence"
    run: RunConfig = field(default_factory=RunConfig)
    seeds: tuple[int, ...] = (0, 1, 2)  # student seeds (init and data order); corpora are shared
    e1: E1 = field(default_factory=E1)
    e2: E2 = field(default_factory=E2)
    e4: E4 = field(default_factory=E4)
    clean_seed: int = setting(777, lo=0, hi=SEED_MAX)  # the attacker's clean data: task-suite traces drawn with it

    def __post_init__(self):
        seeds = list(self.seeds)
        if not seeds:
            raise UserError("seeds: list at least one student seed")
        if not all(0 <= s <= SEED_MAX for s in seeds) or len(set(seeds)) < len(seeds):
            raise UserError(f"seeds: distinct whole numbers in 0 <= x <= {SEED_MAX}, got {seeds}")
        if len(seeds) > MAX_SEEDS:
            raise UserError(f"seeds: at most {MAX_SEEDS} student seeds (each a full set of trainings), "
                            f"got {len(seeds)}")
        specs = list(self.run.sweeps)
        for where, spec in ([("e1.protection", self.e1.protection), ("e4.protection", self.e4.protection)]
                            + [("e2.protections", s) for s in self.e2.protections]
                            + [("e4.denying.protections", s) for s in self.e4.denying.protections]):
            if parse_protection(spec).spec not in specs:
                raise UserError(f"{where}: {spec} is not among run.protections ({', '.join(self.run.protections)})")

    def specs_used(self) -> list[str]:
        """Every protection whose training corpus a finding reads (canonical, in order)."""
        specs = ["none", self.e1.protection, self.e4.protection, *self.e2.protections, *self.e4.denying.protections]
        return list(dict.fromkeys(parse_protection(x).spec for x in specs))

    def specs_audited(self) -> list[str]:
        """Every protection whose audit texts a finding reads."""
        specs = [self.e1.protection, self.e4.protection, *self.e2.protections]
        return list(dict.fromkeys(parse_protection(x).spec for x in specs))


EVIDENCE = {
    "name": "evidence",
    # Everything not set here is the default run's recipe (teacher, 20,000 prompts, 2000-step students at
    # batch 32, lr 4e-3), so the raw, KGW and ADS corpora and students are the default and frontier runs' own.
    "run": {"alpha": 1e-4, "protections": ["none", KGW, GUMBEL, ADS],
            "students": {"seeds": 1},  # the seeds are this config's `seeds`
            "eval": {"n_test": 400, "audit_texts": 256, "wrong_keys": 20}},
    "e4": {"corpus_attacks": ["canonicalize", "dedup:threshold=0.8,num_perm=128,shingle=3",
                              "filter:by=recompute,k=3", "dilute:rho=0.5", "reweight:eps=0.001,beta=1,holdout=64",
                              "reweight:eps=0.001,beta=1,holdout=64,weights=rank", "answer-only"],
           "decode_attacks": ["decode:temperature=1,top_p=0.9", "neutralize:strength=4,h=1,min_count=2,margin=0.5"],
           # weights=rank: why it is here is in results/evidence/NOTES.md
           "denying": {"protections": [ADS],
                       "attacks": ["filter:by=recompute,k=3", "reweight:eps=0.001,beta=1,holdout=64",
                                   "reweight:eps=0.001,beta=1,holdout=64,weights=rank"]}},
}

_KGW4 = "kgw:gamma=0.25,delta=4,h=1,hash=left"  # the smoke teacher's watermark (delta 4: its corpus is small)
EVIDENCE_SMOKE = {
    "name": "evidence-smoke",
    "run": {**EVIDENCE["run"], "alpha": 1e-3,
            "teacher": {"model": "demo", "demo": {"preset": "tiny", "n_train": 2000, "steps": 120, "batch_size": 16,
                                                  "n_test": 24, "max_new_tokens": 64}},
            "protections": ["none", _KGW4, GUMBEL, "temperature:t=2"],
            "corpus": {"n_prompts": 96, "max_new_tokens": 64, "batch_size": 48},
            "students": {"seeds": 1, "max_steps": 30, "batch_size": 16},
            "eval": {"n_test": 16, "max_new_tokens": 64, "audit_texts": 24, "wrong_keys": 5}},
    "seeds": [0, 1],
    "e1": {"protection": _KGW4, "rhos": [0.0, 0.5, 1.0], "modes": ["reading"], "null_keys": 200},
    "e2": {"protections": [_KGW4, GUMBEL], "steps": [0, 10], "clean_records": 64},
    "e4": {"protection": _KGW4,
           "corpus_attacks": ["canonicalize", "filter:by=recompute,k=3", "reweight:eps=0.001,beta=1,holdout=8",
                              "answer-only"],
           "decode_attacks": ["neutralize:strength=4,h=1,min_count=2,margin=0.5,samples=16"],
           "denying": {"protections": ["temperature:t=2"],
                       "attacks": ["filter:by=recompute,k=3", "reweight:eps=0.001,beta=1,holdout=8",
                                   "reweight:eps=0.001,beta=1,holdout=8,weights=rank"]}},
}

PRESETS = {"evidence": EVIDENCE, "evidence-smoke": EVIDENCE_SMOKE}


def evidence_config(preset: str = "evidence", *overrides: dict) -> EvidenceConfig:
    """The resolved evidence config: the preset, then each override layer; `run.name` is the config's name."""
    if not isinstance(preset, str) or preset not in PRESETS:
        raise UserError(f"unknown evidence preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    layers = [PRESETS[preset], *[o for o in overrides if o]]
    name = next((layer["name"] for layer in reversed(layers) if "name" in layer), "evidence")
    return overlay(EvidenceConfig, *layers, {"run": {"name": name}})
