"""Built-in experiment configs for `antidistill run` (a TOML file overrides any of these keys).

A config is a nested dict; a TOML file is merged over the preset it names (`preset = "smoke"`,
default `default`), so it only needs the keys it changes. Unknown keys are errors. Example:

    # my.toml  ->  antidistill run my.toml   (results/my/)
    preset = "default"
    alpha = 1e-3
    protections = ["none", "kgw:gamma=0.25,delta=2,h=2", "synthid:depth=16,h=4"]
    [key]
    file = "secret.key"          # else the public demo key
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
import tomllib
from pathlib import Path

from antidistill.watermark.errors import UserError

# The demo key is public on purpose (anyone can rerun the reference results); use --key-file or
# [key] file = ... for anything real. Reports show only its fingerprint.
DEMO_KEY_TEXT = "antidistill public demo key -- not a secret"

DEFAULT = {
    "name": "default",
    "seed": 0,
    "alpha": 1e-4,  # significance level of every verdict in the report
    "key": {"text": DEMO_KEY_TEXT, "file": ""},
    "teacher": {"model": "demo", "demo": {}},  # demo: TeacherConfig overrides (e.g. steps, preset)
    "protections": ["none", "kgw:gamma=0.25,delta=2,h=1,hash=left", "unigram:gamma=0.5,delta=2", "gumbel:h=1"],
    # The distiller's attacks (students/attacks/spec.py), applied to every student: corpus attacks to its
    # training corpus, student attacks (finetune) to its weights, decode attacks to its generation-mode audits.
    "attacks": [],
    "corpus": {"n_prompts": 1200, "temperature": 1.0, "max_new_tokens": 128, "batch_size": 100},
    "students": {"preset": "tiny", "mode": "sft", "lora": "", "epochs": 1.0, "max_steps": 1500, "batch_size": 16,
                 "lr": 0.0},
    "eval": {
        "n_test": 200, "max_new_tokens": 128,  # capability transfer: graded held-out test items
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
    "students": {"preset": "tiny", "epochs": 1.0, "max_steps": 40, "batch_size": 16},
    "eval": {"n_test": 24, "max_new_tokens": 64, "audit_texts": 32, "audit_modes": ["reading"], "wrong_keys": 2,
             "attacks": [["substitute", 0.3]], "n_boot": 300},
}

PRESETS = {"default": {}, "smoke": SMOKE}


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
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return _merge(DEFAULT, PRESETS[name])


def load_config(path: str | Path | None = None, preset: str | None = None) -> dict:
    """The resolved config: a preset, or a TOML file merged over the preset it names."""
    if path is None:
        return preset_config(preset or "default")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist; pass a TOML file or --preset "
                        f"({', '.join(PRESETS)})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid TOML ({err})") from None
    base = data.pop("preset", preset or "default")
    cfg = _merge(preset_config(base), data)
    if "name" not in data:
        cfg["name"] = path.stem
    return cfg
