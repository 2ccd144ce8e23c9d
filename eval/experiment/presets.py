"""Built-in experiment configs for `antidistill run` (a TOML file overrides any of these keys).

A config is a nested dict; a TOML file is merged over the preset it names (`preset = "smoke"`,
default `default`), so it only needs the keys it changes. Unknown keys are errors. Example:

    # my.toml  ->  antidistill run my.toml   (results/my/)
    preset = "default"
    alpha = 1e-3
    protections = ["none", "kgw:gamma=0.25,delta=2,h=2", "synthid:depth=16,h=4"]
    [key]
    file = "secret.key"          # or text = "..."; else $ANTIDISTILL_KEY, else the public demo key
    [corpus]
    n_prompts = 2000
    [students]
    preset = "mini"
    lora = "r=16,alpha=32"
    [eval]
    audit_modes = ["reading"]
"""
from __future__ import annotations

import copy
import math
import re
import tomllib
from pathlib import Path

from antidistill.students.tasks.suite import N_TEST_MAX
from antidistill.watermark.errors import UserError, read_bytes

# The demo key is public on purpose (anyone can rerun the reference results); it is used only when
# neither [key] nor $ANTIDISTILL_KEY gives one (watermark.keys.resolve_key). Reports show only its fingerprint.
DEMO_KEY_TEXT = "antidistill public demo key -- not a secret"
# students.seeds and students.workers: every seed is a full training per protection, every worker a
# process holding a model; beyond these a config is surely a typo
MAX_SEEDS, MAX_WORKERS = 100, 64

DEFAULT = {
    "name": "default",
    "seed": 0,
    "alpha": 1e-4,  # significance level of every verdict in the report
    "key": {"text": "", "file": ""},  # neither: $ANTIDISTILL_KEY, else DEMO_KEY_TEXT
    "teacher": {"model": "demo", "demo": {}},  # demo: TeacherConfig overrides (e.g. steps, preset)
    # none, one watermark and two capability-denying countermeasures; the rest is in the frontier preset
    "protections": ["none", "kgw:gamma=0.25,delta=2,h=1,hash=left", "temperature:t=1.5", "trace:keep=answer"],
    # The distiller's attacks (students/attacks/spec.py), applied to every student: corpus attacks to its
    # training corpus, student attacks (finetune) to its weights, decode attacks to its generation-mode audits.
    "attacks": [],
    # 20,000 prompts: a student's 2000 steps then see each trace about 3 times. Chosen after trials (training
    # seed 100 on a corpus of prompt seed 100, never a reported run): 5,000 prompts (13 passes) gave 62%,
    # 20,000 gave 72% (add 97%, mul 87%, sort 97%; count stays near its "always 0" floor at 2000 steps).
    "corpus": {"n_prompts": 20000, "temperature": 1.0, "max_new_tokens": 128, "batch_size": 500},
    # seeds: every student is trained this many times (training seeds seed, seed + 1, ...) on its corpus;
    # workers: trainings (and corpus generations) run at once, in separate processes sharing the CPU's threads
    # lr 4e-3: the demo teacher's rate for this shape (a 2000-step trial at 3e-3 on ground-truth traces,
    # seed 100, reached 62%; chosen after that trial, before any reported run)
    "students": {"preset": "tiny", "mode": "sft", "lora": "", "epochs": 1.0, "max_steps": 2000, "batch_size": 32,
                 "lr": 4e-3, "seeds": 3, "workers": 2},
    "eval": {
        "n_test": 400, "max_new_tokens": 128,  # capability transfer: graded held-out test items
        "quality": True, "detectability": True, "audit": True, "transfer": True,
        "audit_texts": 256, "audit_modes": ["reading", "generation"], "wrong_keys": 3,
        # Generation mode: 0 decodes greedily. The demo traces have little entropy outside their choice
        # points, so a suspect's top choices carry its learned bias better than its samples do.
        "audit_temperature": 0.0,
        # Audit only choice points: positions where the unprotected teacher's top-1 probability is
        # below this (no token has a majority; forced tokens carry no watermark); 0 scores every position.
        "choice_filter": 0.5,
        # Reading mode: score the suspect's "top1" prediction, or its "contrast" choice (the token it
        # prefers most over the unprotected teacher), where a learned watermark shows more plainly.
        "audit_selection": "contrast",
        "attacks": [["substitute", 0.1], ["substitute", 0.3], ["substitute", 0.5], ["delete", 0.1],
                    ["delete", 0.3], ["insert", 0.1], ["insert", 0.3]],
        "n_boot": 2000,
    },
}

SMOKE = {
    "name": "smoke",
    "alpha": 1e-3,
    "teacher": {"model": "demo", "demo": {"preset": "tiny", "n_train": 2000, "steps": 120, "batch_size": 16,
                                          "n_test": 24, "max_new_tokens": 64}},
    "protections": ["none", "kgw:gamma=0.25,delta=4,h=1,hash=left"],
    "corpus": {"n_prompts": 96, "max_new_tokens": 64, "batch_size": 48},
    "students": {"preset": "tiny", "epochs": 1.0, "max_steps": 40, "batch_size": 16, "seeds": 2, "workers": 1},
    "eval": {"n_test": 24, "max_new_tokens": 64, "audit_texts": 32, "audit_modes": ["reading"], "wrong_keys": 2,
             "attacks": [["substitute", 0.3]], "n_boot": 300},
}

# The rest of the countermeasures, each family swept over its parameter; corpora, students and
# settings are the default's, so `none`, `temperature:t=1.5` and `trace:keep=answer` come from its cache.
# The unprotected teacher (sampled at temperature 1) is temperature's t = 1 point, so temperature has four
# points. Its range was fixed before any run; t = 2.2 (teacher 8.7%, a student can learn nothing there)
# was dropped for CPU time, before any student of it was trained. ADS's lam and DOGe's beta were chosen
# after looking at the teacher side only (never at a student): lam 0.02-0.2, as first written, left the
# teacher's samples unchanged (98.3% at every lam, in a teacher-only run of 300 prompts), a calibration
# put lam's useful range around 1 (teacher 97.5/90/65/19.5% at lam 1/2/3/5), and beta 0.1 moved DOGe's
# KL by 8% against 14% at 3.
FRONTIER = {
    "name": "frontier",
    "protections": ["none", "temperature:t=[1.3,1.5,1.8]", "ads:lam=[0.5,1,2,3]", "poe:gamma=0.3",
                    "doge:beta=3", "trace:keep=[answer,results]"],
    "eval": {"detectability": False, "audit": False},
}

PRESETS = {"default": {}, "smoke": SMOKE, "frontier": FRONTIER}


_SWEEP = re.compile(r"(\w+)\s*=\s*\[([^\]]*)\]")


def expand_protections(entries: list[str]) -> dict[str, tuple[str, str | None, str | None]]:
    """Protection specs, a sweep written as one entry: `temperature:t=[0.8,1,1.3]` stands for
    `temperature:t=0.8`, `temperature:t=1`, `temperature:t=1.3` (one swept parameter per entry).

    Returns canonical spec -> (family, swept parameter, its value as written), in config order.
    """
    from antidistill.watermark import parse_protection

    out: dict[str, tuple[str, str | None, str | None]] = {}
    for entry in entries:
        if not isinstance(entry, str):
            raise UserError(f"protections: {entry!r} is not a protection spec string")
        sweeps = _SWEEP.findall(entry)
        if len(sweeps) > 1:
            raise UserError(f"protections: {entry!r} sweeps {len(sweeps)} parameters; sweep one per entry")
        if not sweeps:
            p = parse_protection(entry)
            specs = [(p.spec, None, None)]
        else:
            name, body = sweeps[0]
            values = [v.strip() for v in body.split(",") if v.strip()]
            if not values:
                raise UserError(f"protections: {entry!r} sweeps {name} over no values")
            specs = [(parse_protection(_SWEEP.sub(f"{name}={v}", entry)).spec, name, v) for v in values]
        for spec, name, value in specs:
            if spec in out:
                raise UserError(f"protections listed twice: {spec}")
            out[spec] = (spec.split(":")[0], name, value)
    return out

# Ranges and choices of the config's leaves (their types come from DEFAULT): (low, high) inclusive,
# None for unbounded, or a tuple of strings for the allowed values of a string or of a list's items.
RULES = {
    "seed": (0, 2**32 - 1), "alpha": (0, 1), "corpus.n_prompts": (1, None), "corpus.temperature": (0, 100),
    "corpus.max_new_tokens": (1, None), "corpus.batch_size": (1, None), "students.mode": ("sft", "logit-kd"),
    "students.epochs": (0, 1000), "students.max_steps": (0, None), "students.batch_size": (1, None),
    "students.lr": (0, 1), "students.seeds": (1, MAX_SEEDS),
    "students.workers": (1, MAX_WORKERS), "eval.n_test": (1, N_TEST_MAX), "eval.max_new_tokens": (1, None),
    "eval.audit_texts": (1, None), "eval.audit_modes": ("reading", "generation"), "eval.wrong_keys": (0, 1000),
    "eval.audit_temperature": (0, 100), "eval.choice_filter": (0, 1), "eval.audit_selection": ("top1", "contrast"),
    "eval.n_boot": (1, None),
}
OPEN_LOW = {"alpha", "corpus.temperature", "students.epochs"}  # must be strictly above their low end
OPEN_HIGH = {"alpha"}


def _kind(value) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}[type(value)]


def check_config(cfg: dict) -> None:
    """Every leaf has its default's type (an int is a number too) and lies in RULES's range.

    `seed = 1.7`, `alpha = "abc"` or `protections = "none"` would otherwise run with a silently
    converted value or fail deep inside a stage.
    """
    from antidistill.students.attacks import ATTACKS, parse_attacks

    _check_leaves(cfg, DEFAULT, "")
    last = cfg["seed"] + cfg["students"]["seeds"] - 1  # the training seeds are seed, seed + 1, ...
    if last > RULES["seed"][1]:
        raise UserError(f"config key seed + students.seeds - 1 = {last} exceeds the largest seed {RULES['seed'][1]}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", cfg["name"]):
        raise UserError(f"config key name {cfg['name']!r} must be a plain folder name (letters, digits, . _ -)")
    _check_teacher(cfg["teacher"]["demo"])
    for p in cfg["protections"]:
        if not isinstance(p, str):
            raise UserError(f"config key protections must list protection specs (strings), got {p!r}")
    for a in cfg["attacks"]:
        if not isinstance(a, str):
            raise UserError(f"config key attacks must list attack specs (strings), got {a!r}")
    parse_attacks(cfg["attacks"])  # unknown names, bad parameters: one line naming the spec
    for a in cfg["eval"]["attacks"]:
        if not (isinstance(a, list) and len(a) == 2 and a[0] in ATTACKS and isinstance(a[1], (int, float))
                and not isinstance(a[1], bool) and 0 <= a[1] <= 1):
            raise UserError(f"config key eval.attacks: {a!r} must be [name, rate] with name one of "
                            f"{', '.join(ATTACKS)} and 0 <= rate <= 1")


def _check_teacher(demo: dict) -> None:
    """[teacher.demo] overrides TeacherConfig: known fields, their types, positive sizes."""
    from dataclasses import fields

    from antidistill.students.models.teacher import TeacherConfig

    defaults = {f.name: getattr(TeacherConfig(), f.name) for f in fields(TeacherConfig)}
    for k, v in demo.items():
        if k not in defaults:
            raise UserError(f"unknown config key teacher.demo.{k!r}; valid keys here: {', '.join(defaults)}")
        d = defaults[k]
        if k == "tasks":
            if not isinstance(v, dict):
                raise UserError(f"config key teacher.demo.tasks must be a table, got {v!r}")
            continue
        number = isinstance(d, float) and isinstance(v, (int, float)) and not isinstance(v, bool)
        if not (number or type(v) is type(d)):
            raise UserError(f"config key teacher.demo.{k} must be {_kind(d)}, got {v!r}")
        zero_ok = k in ("seed", "warmup", "weight_decay")
        if isinstance(v, (int, float)) and (not math.isfinite(v) or v < 0 or (v == 0 and not zero_ok)):
            raise UserError(f"config key teacher.demo.{k} must be finite and {'>= 0' if zero_ok else '> 0'}, "
                            f"got {v!r}")


def _check_leaves(cfg: dict, base: dict, where: str) -> None:
    for k, default in base.items():
        name, v = f"{where}{k}", cfg[k]
        if isinstance(default, dict) and default and name != "teacher.demo":
            _check_leaves(v, default, f"{name}.")
            continue
        number = isinstance(default, float) and isinstance(v, (int, float)) and not isinstance(v, bool)
        if not (number or type(v) is type(default)):
            raise UserError(f"config key {name} must be {_kind(default)}, got {v!r}")
        if number and not math.isfinite(v):
            raise UserError(f"config key {name} must be finite, got {v!r}")
        rule = RULES.get(name)
        if rule and isinstance(rule[0], str):
            bad = [x for x in (v if isinstance(v, list) else [v]) if x not in rule]
            if bad:
                raise UserError(f"config key {name}: {bad[0]!r} is not one of {', '.join(rule)}")
            if v == []:
                raise UserError(f"config key {name} must list at least one of {', '.join(rule)}")
        elif rule:
            lo, hi = rule
            if (lo is not None and (v < lo or (v == lo and name in OPEN_LOW))) or \
                    (hi is not None and (v > hi or (v == hi and name in OPEN_HIGH))):
                low = f"{lo} {'<' if name in OPEN_LOW else '<='} " if lo is not None else ""
                high = f" {'<' if name in OPEN_HIGH else '<='} {hi}" if hi is not None else ""
                raise UserError(f"config key {name} must lie in {low}x{high}, got {v!r}")


def _merge(base: dict, over: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in base:
            raise UserError(f"unknown config key {where}{k!r}; valid keys here: {', '.join(base)}")
        if isinstance(base[k], dict) and base[k] and not (where == "teacher." and k == "demo"):
            if not isinstance(v, dict):
                raise UserError(f"config key {where}{k} must be a table")
            out[k] = _merge(base[k], v, f"{where}{k}.")
        else:
            out[k] = copy.deepcopy(v)
    return out


def preset_config(name: str) -> dict:
    if not isinstance(name, str) or name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return _merge(DEFAULT, PRESETS[name])


def load_config(path: str | Path | None = None, preset: str | None = None) -> dict:
    """The resolved config: a preset, or a TOML file merged over the preset it names."""
    if path is None:
        return preset_config(preset or "default")
    path = Path(path)
    if not path.exists():
        raise UserError(f"config file {path} does not exist; pass a TOML file or --preset "
                        f"({', '.join(PRESETS)})")
    try:
        data = tomllib.loads(read_bytes(path, "config file").decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid TOML ({err})") from None
    base = data.pop("preset", preset or "default")
    try:
        cfg = _merge(preset_config(base), data)
        if "name" not in data:
            cfg["name"] = path.stem
        check_config(cfg)
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    return cfg
