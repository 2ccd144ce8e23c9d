"""The `antidistill run` config: typed sections, the built-in presets, and the seeds derived from it.

A config is a frozen `RunConfig` built by `eval.core.config`: the dataclass defaults are the default
preset, a preset is a partial override dict, and a TOML file is merged over the preset it names
(`preset = "smoke"`, default `default`), so it only needs the keys it changes. Unknown keys, wrong
types and out-of-range values are one line naming the key. Example:

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

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from antidistill.students.attacks import ATTACKS, parse_attacks
from antidistill.students.models.loader import check_model
from antidistill.students.models.presets import split_preset
from antidistill.students.tasks.registry import parse_task
from antidistill.students.tasks.suite import N_TEST_MAX
from antidistill.students.models.teacher import TeacherConfig
from antidistill.watermark import Key, parse_protection
from antidistill.watermark.errors import UserError

from ..core.config import as_dict, check_name, from_presets, setting

# The demo key is public on purpose (anyone can rerun the reference results); it is used only when
# neither [key] nor $ANTIDISTILL_KEY gives one (watermark.keys.resolve_key). Reports show only its fingerprint.
DEMO_KEY_TEXT = "antidistill public demo key -- not a secret"
SEED_MAX = 2**32 - 1  # numpy and torch both accept seeds below 2**32
# Every seed is a full training per protection, every worker a process holding a model: beyond these, a typo.
MAX_SEEDS, MAX_WORKERS = 100, 64


@dataclass(frozen=True)
class Seeds:
    """Every random stream of a run, derived from the config's `seed` by fixed offsets. The offsets
    are part of every cached artifact's key: they never change (a new one changes every number)."""

    base: int
    n_students: int = 1

    @property
    def corpus(self) -> int:  # the students' training corpora (prompts and sampling)
        return self.base

    @property
    def audit_texts(self) -> int:  # the auditor's held-out protected texts, disjoint from the training draw
        return self.base + 1000

    @property
    def clean(self) -> int:  # the attacker's clean task-suite traces (the key never touched them)
        return self.base + 777

    @property
    def decode_attack(self) -> int:  # a suspect's own decoding choices in a generation-mode audit
        return self.base + 3

    @property
    def audit_generation(self) -> int:  # a generation-mode audit's sampling
        return self.base + 7

    @property
    def training(self) -> list[int]:  # each student's initialisation and data order: seed, seed + 1, ...
        return [self.base + k for k in range(self.n_students)]


@dataclass(frozen=True)
class KeySection:
    """[key]: where the watermark key comes from (neither: $ANTIDISTILL_KEY, else the demo key)."""

    text: str = ""
    file: str = ""


@dataclass(frozen=True)
class TeacherSection:
    """[teacher]: `demo` (the bench's own teacher, `demo` holding TeacherConfig overrides) or a model name."""

    model: str = "demo"
    demo: dict = setting({})

    def __post_init__(self):
        check_teacher_demo(self.demo)
        if not isinstance(self.model, str) or not self.model.strip():
            raise UserError("config key teacher.model must be 'demo', 'smollm2', a model folder, a .gguf file or a "
                            "hub id")

    def recipe(self, task: str) -> TeacherConfig:
        """The demo teacher's recipe for the run's task (it learns the task it is asked)."""
        return TeacherConfig(**self.demo, **({} if task == "demo" else {"task": task}))

    def id(self, task: str) -> str:
        """The teacher's name in cache keys: demo-<hash of its recipe>, or the model's name."""
        from antidistill.students.cache import config_hash

        if self.model == "demo":
            return f"demo-{config_hash(self.recipe(task).as_dict())}"
        return self.model


@dataclass(frozen=True)
class CorpusSection:
    """[corpus]: how the teacher answers the students' prompts."""

    # 20,000 prompts: a 2000-step student sees each trace about 3 times (trials: results/default/NOTES.md)
    n_prompts: int = setting(20000, lo=1)
    temperature: float = setting(1.0, lo=0, hi=100, lo_open=True)
    max_new_tokens: int = setting(128, lo=1)
    batch_size: int = setting(500, lo=1)


@dataclass(frozen=True)
class StudentsSection:
    """[students]: the distillation recipe, how many training seeds, and how many run at once."""

    preset: str = "tiny"
    mode: str = setting("sft", choices=("sft", "logit-kd"))
    lora: str = ""
    epochs: float = setting(1.0, lo=0, hi=1000, lo_open=True)
    max_steps: int = setting(2000, lo=0)
    batch_size: int = setting(32, lo=1)
    lr: float = setting(4e-3, lo=0, hi=1)  # the demo teacher's rate for this shape (results/default/NOTES.md)
    # Batches of similar lengths in random order: a third less padding on the demo task, but there a
    # batch then holds one skill, and the raw student fell from about 80% to 30% (results/default/NOTES.md)
    group_by_length: bool = False
    seeds: int = setting(3, lo=1, hi=MAX_SEEDS)  # trainings per protection, seeds seed, seed + 1, ...
    workers: int = setting(2, lo=1, hi=MAX_WORKERS)  # trainings (and generations) at once, sharing the threads

    def recipe(self) -> dict:
        """The settings a student's weights depend on (its cache key): all but seeds and workers, and
        group_by_length only when on (students from before it keep their keys)."""
        return {k: v for k, v in as_dict(self).items()
                if k not in ("seeds", "workers") and not (k == "group_by_length" and not v)}


@dataclass(frozen=True)
class EvalSection:
    """[eval]: which evaluations run and their settings."""

    n_test: int = setting(400, lo=1, hi=N_TEST_MAX)  # capability transfer: graded held-out test items
    max_new_tokens: int = setting(128, lo=1)
    quality: bool = True
    # Teacher quality's perplexity over this many prompts drawn at random, the same in every corpus
    # (0: all); accuracy, diversity and length always read every record.
    perplexity_texts: int = setting(2000, lo=0)
    detectability: bool = True
    audit: bool = True
    transfer: bool = True
    audit_texts: int = setting(256, lo=1)
    audit_modes: tuple[str, ...] = setting(("reading", "generation"), choices=("reading", "generation"))
    wrong_keys: int = setting(3, lo=0, hi=1000)
    # 0 decodes greedily: the demo traces have little entropy outside their choice points, so a
    # suspect's top choices carry its learned bias better than its samples do.
    audit_temperature: float = setting(0.0, lo=0, hi=100)
    # Score only positions where the unprotected teacher's top-1 probability is below this (forced
    # tokens carry no watermark); 0 scores every position.
    choice_filter: float = setting(0.5, lo=0, hi=1)
    # Reading mode scores the suspect's "top1" token or its "contrast" choice (the token it prefers
    # most over the unprotected teacher), where a learned watermark shows more plainly.
    audit_selection: str = setting("contrast", choices=("top1", "contrast"))
    attacks: tuple[tuple[str, float], ...] = (("substitute", 0.1), ("substitute", 0.3), ("substitute", 0.5),
                                              ("delete", 0.1), ("delete", 0.3), ("insert", 0.1), ("insert", 0.3))
    n_boot: int = setting(2000, lo=1)
    # Single-text detection against length: each protected output cut to its first n completion tokens,
    # scored on every position and on the choice points (choice_filter); none: the table is off.
    lengths: tuple[int, ...] = setting((), lo=1, hi=100_000)
    # Teacher quality adds each answer's MiniLM similarity to the unprotected answer of the same prompt
    # (free-form answers, where accuracy says little; needs the smollm2 extra's encoder).
    similarity: bool = False

    def __post_init__(self):
        if len(set(self.lengths)) < len(self.lengths):
            raise UserError(f"config key eval.lengths lists a length twice: {list(self.lengths)}")
        for name, rate in self.attacks:
            if name not in ATTACKS or not 0 <= rate <= 1:
                raise UserError(f"config key eval.attacks: {[name, rate]!r} must be [name, rate] with name one of "
                                f"{', '.join(ATTACKS)} and 0 <= rate <= 1")


@dataclass(frozen=True)
class RunConfig:
    """One `antidistill run` experiment: what the teacher is, which protections and attacks, how the
    corpora and students are made and what is evaluated. Owns the cross-key checks (none among the
    protections, every spec parses, the training seeds fit)."""

    name: str = "default"
    # What is asked and graded (students/tasks/registry.py): demo, gym:NAME[,k=v...], jsonl:path=FILE[,...]
    task: str = "demo"
    seed: int = setting(0, lo=0, hi=SEED_MAX)
    alpha: float = setting(1e-4, lo=0, hi=1, lo_open=True, hi_open=True)  # every verdict's significance level
    # Torch threads per process; 0: the cores other programs leave free, split over the processes,
    # decided at each stage (eval.core.jobs.threads_per_process). A fixed count repeats the bits.
    threads: int = setting(0, lo=0, hi=1024)
    key: KeySection = field(default_factory=KeySection)
    teacher: TeacherSection = field(default_factory=TeacherSection)
    # none, one watermark and two capability-denying countermeasures; the rest is the frontier preset's
    protections: tuple[str, ...] = ("none", "kgw:gamma=0.25,delta=2,h=1,hash=left", "temperature:t=1.5",
                                    "trace:keep=answer")
    # The distiller's attacks (students/attacks/spec.py) on every student: corpus attacks on its training
    # corpus, student attacks (finetune) on its weights, decode attacks on its generation-mode audits.
    attacks: tuple[str, ...] = ()
    corpus: CorpusSection = field(default_factory=CorpusSection)
    students: StudentsSection = field(default_factory=StudentsSection)
    eval: EvalSection = field(default_factory=EvalSection)

    def __post_init__(self):
        check_name(self.name)
        last = self.seed + self.students.seeds - 1
        if last > SEED_MAX:
            raise UserError(f"config key seed + students.seeds - 1 = {last} exceeds the largest seed {SEED_MAX}")
        if "none" not in self.sweeps:
            raise UserError("protections must include 'none' (the raw teacher every protection is compared with)")
        attacks = parse_attacks(list(self.attacks))  # unknown names, bad parameters, wrong order: one line
        task = parse_task(self.task)  # an unknown task, a missing file, a bad parameter: one line
        needs = [(s, f"trace:keep={parse_protection(s).keep}") for s in self.sweeps if s.startswith("trace")]
        needs += [(a.spec, "canonicalize" if a.name == "canonicalize" else "recompute") for a in attacks
                  if a.name == "canonicalize" or (a.name == "filter" and a.by == "recompute")]
        for spec, feature in needs:
            if reason := task.supports(feature):
                raise UserError(f"config: {spec} cannot run on this task: {reason}")
        if self.teacher.model != "demo" and self.teacher.demo:
            raise UserError("config key teacher.demo configures the demo teacher only; teacher.model is "
                            f"{self.teacher.model!r}")
        check_model(self.teacher.model, "config key teacher.model")
        check_model(self.student_model, "config key students.preset")
        if self.eval.similarity and self.eval.quality:
            from ..measures.similarity import minilm_dir

            minilm_dir()  # the encoder's package is there, before anything runs

    @property
    def student_model(self) -> str:
        """students.preset as `load_model` reads it: `PRESET:tokenizer=teacher` names the teacher's tokenizer."""
        preset = split_preset(self.students.preset)
        if preset is None or preset[1] != "teacher":
            return self.students.preset
        return f"{preset[0]}:tokenizer={self.teacher_tokenizer}"

    @property
    def teacher_tokenizer(self) -> str:
        """Whose tokenizer the teacher speaks: the named model's, or the demo teacher's (the project's
        when it is trained from scratch, the pretrained model's when it is fine-tuned from one)."""
        if self.teacher.model != "demo":
            return self.teacher.model
        start = self.teacher.demo.get("preset", "tiny")
        preset = split_preset(start)
        return start if preset is None else preset[1] or "project"

    @property
    def sweeps(self) -> dict[str, tuple[str, str | None, str | None]]:
        """Canonical protection spec -> (family, swept parameter, its value as written)."""
        return expand_protections(self.protections)

    @property
    def seeds(self) -> Seeds:
        return Seeds(self.seed, self.students.seeds)


def check_teacher_demo(demo: dict) -> None:
    """[teacher.demo] overrides TeacherConfig: known fields, their types, positive sizes."""
    # `task` is the run's, not the teacher's: a demo teacher learns the task the run asks
    defaults = {f.name: getattr(TeacherConfig(), f.name) for f in dataclasses.fields(TeacherConfig) if f.name != "task"}
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
            kind = {int: "an integer", float: "a number", str: "a string"}.get(type(d), "a table")
            raise UserError(f"config key teacher.demo.{k} must be {kind}, got {v!r}")
        zero_ok = k in ("seed", "warmup", "weight_decay")
        if isinstance(v, (int, float)) and (not math.isfinite(v) or v < 0 or (v == 0 and not zero_ok)):
            raise UserError(f"config key teacher.demo.{k} must be finite and {'>= 0' if zero_ok else '> 0'}, "
                            f"got {v!r}")
    try:
        TeacherConfig(**demo)
    except TypeError as err:
        raise UserError(f"[teacher.demo]: {err}") from None


_SWEEP = re.compile(r"(\w+)\s*=\s*\[([^\]]*)\]")


def expand_protections(entries) -> dict[str, tuple[str, str | None, str | None]]:
    """Protection specs, a sweep written as one entry: `temperature:t=[0.8,1,1.3]` stands for
    `temperature:t=0.8`, `temperature:t=1`, `temperature:t=1.3` (one swept parameter per entry).

    Returns canonical spec -> (family, swept parameter, its value as written), in config order.
    """
    out: dict[str, tuple[str, str | None, str | None]] = {}
    for entry in entries:
        if not isinstance(entry, str):
            raise UserError(f"protections: {entry!r} is not a protection spec string")
        sweeps = _SWEEP.findall(entry)
        if len(sweeps) > 1:
            raise UserError(f"protections: {entry!r} sweeps {len(sweeps)} parameters; sweep one per entry")
        if not sweeps:
            specs = [(parse_protection(entry).spec, None, None)]
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

# The rest of the countermeasures, each family swept over its parameter (how the ranges were chosen:
# results/frontier/NOTES.md); corpora, students and settings are the default's, so `none`,
# `temperature:t=1.5` and `trace:keep=answer` come from its cache. `gumbel:h=2` (the natural run's
# spec) is the distortion-free watermark's point: what a student learns from a watermarked teacher.
FRONTIER = {
    "name": "frontier",
    "protections": ["none", "temperature:t=[1.3,1.5,1.8]", "ads:lam=[0.5,1,2,3]", "poe:gamma=0.3",
                    "doge:beta=3", "trace:keep=[answer,results]", "gumbel:h=2"],
    "eval": {"detectability": False, "audit": False},
}

# The whole pipeline on a reasoning-gym task with tiny models, in a few minutes on 2 CPU cores (in CI): a
# `tiny` teacher learns sums and differences of two or three digits (gym problems ship no traces, so
# it answers `Answer: X` directly), then the smoke's students and audits; `ads` builds its distilled proxy
# with the teacher's tokenizer.
GYM_SMOKE = {
    **SMOKE,
    "name": "gym-smoke",
    "task": "gym:chain_sum,min_terms=2,max_terms=3,min_digits=1,max_digits=1",
    "teacher": {"model": "demo", "demo": {"preset": "tiny", "n_train": 4000, "steps": 300, "batch_size": 32,
                                          "n_test": 48, "max_new_tokens": 16}},
    "protections": ["none", "kgw:gamma=0.25,delta=4,h=1,hash=left", "trace:keep=answer", "ads:lam=1"],
    "corpus": {"n_prompts": 128, "max_new_tokens": 16, "batch_size": 64},
    "eval": {**SMOKE["eval"], "max_new_tokens": 16},
}

# A pretrained teacher on CPU (results/smollm2/NOTES.md). SmolLM2-135M-Instruct answers 35% of two-digit
# sums out of the box (results/teachers/smollm2), so it is fine-tuned once on the task's reference
# answers into the teacher (a recipe fixed before it was trained, not tuned on its accuracy). Students:
# SmolLM2 itself with LoRA (what a distiller starts from: the teacher's own base, 35% before
# distillation) in `smollm2`; the `tiny` preset from scratch with the project tokenizer (cross-tokenizer
# SFT) in `smollm2-scratch`, which shares the teacher and the corpora through the cache.
ADDITION = "gym:basic_arithmetic,min_terms=2,max_terms=2,max_digits=2,allow_parentheses=false,allow_negation=false,operators=+"
SMOLLM2 = {
    "name": "smollm2",
    "task": ADDITION,
    "teacher": {"model": "demo", "demo": {"preset": "smollm2", "n_train": 1600, "steps": 100, "batch_size": 16,
                                          "lr": 5e-5, "warmup": 10, "n_test": 256, "max_new_tokens": 16}},
    "protections": ["none", "kgw:gamma=0.25,delta=2,h=1,hash=left", "temperature:t=1.5"],
    "corpus": {"n_prompts": 800, "max_new_tokens": 16, "batch_size": 64},
    "students": {"preset": "smollm2", "lora": "r=8,alpha=16", "epochs": 1.0, "max_steps": 40, "batch_size": 16,
                 "lr": 3e-4, "seeds": 3, "workers": 2},
    "eval": {"n_test": 200, "max_new_tokens": 16, "audit_texts": 128, "wrong_keys": 3,
             "attacks": [["substitute", 0.1], ["substitute", 0.3]], "n_boot": 2000},
}
SMOLLM2_SCRATCH = {
    **SMOLLM2,
    "name": "smollm2-scratch",
    "students": {"preset": "tiny", "epochs": 30.0, "max_steps": 1500, "batch_size": 32, "lr": 4e-3, "seeds": 3,
                 "workers": 2},
}
# The same shape sized for one GPU (not run yet: no GPU was lent; estimated cost in results/smollm2/NOTES.md):
# 1,000 test items and 5 seeds put the standard error of a raw-vs-protected accuracy difference near 2
# points over items and seeds, so a 10-point effect is resolved; 8,000 prompts and 400 LoRA steps a student.
SMOLLM2_GPU = {
    **SMOLLM2,
    "name": "smollm2-gpu",
    "teacher": {"model": "demo", "demo": {**SMOLLM2["teacher"]["demo"], "n_train": 9600, "steps": 600,
                                          "n_test": 1000}},
    "protections": ["none", "kgw:gamma=0.25,delta=2,h=1,hash=left", "temperature:t=1.5", "ads:lam=1"],
    "corpus": {"n_prompts": 8000, "max_new_tokens": 16, "batch_size": 256},
    "students": {**SMOLLM2["students"], "max_steps": 400, "seeds": 5, "workers": 1},
    "eval": {**SMOLLM2["eval"], "n_test": 1000, "audit_texts": 512},
}

# The watermarks on a pretrained LM in natural language (the former `antidistill natural`, now a run):
# SmolLM2-135M-Instruct answers the shipped instruction prompts and gsm_symbolic problems (task
# `natural`, a quarter of them gsm) at temperature 0.7 over the full vocabulary (Kirchenbauer et al.'s
# multinomial setting; at 1.0 a 135M model drifts off topic). Measured: single-text detection against
# length on every position and on the choice points (top-1 < 0.9), the user's cost (perplexity,
# similarity to the unprotected answer, gsm accuracy), and radioactivity of LoRA students of SmolLM2
# distilled on each watermark's outputs (the raw-distilled students are the null), two seeds each.
# Sized for a GPU (about an hour of GPU work by the former command's timing); natural-smoke runs on CPU.
NATURAL_WATERMARKS = ["kgw:gamma=0.25,delta=2,h=1,hash=left", "unigram:gamma=0.5,delta=2", "gumbel:h=2",
                      "synthid:depth=16,h=4", "kgw:gamma=0.25,delta=2,h=1,hash=left,entropy=1.5"]
NATURAL = {
    "name": "natural",
    "task": "natural",
    "alpha": 1e-3,
    "teacher": {"model": "smollm2"},
    "protections": ["none", *NATURAL_WATERMARKS],
    "corpus": {"n_prompts": 64, "temperature": 0.7, "max_new_tokens": 400, "batch_size": 32},
    "students": {"preset": "smollm2", "lora": "r=16,alpha=32", "epochs": 2.0, "max_steps": 0, "batch_size": 8,
                 "lr": 2e-3, "seeds": 2, "workers": 1},
    "eval": {"n_test": 64, "max_new_tokens": 400, "audit_texts": 32, "audit_modes": ["reading", "generation"],
             "wrong_keys": 5, "audit_temperature": 0.7, "choice_filter": 0.9, "lengths": [50, 100, 200, 400],
             "similarity": True, "attacks": [["substitute", 0.1], ["substitute", 0.3]], "n_boot": 2000},
}
NATURAL_SMOKE = {
    **NATURAL,
    "name": "natural-smoke",
    "protections": ["none", NATURAL_WATERMARKS[0], NATURAL_WATERMARKS[4]],
    "corpus": {"n_prompts": 8, "temperature": 0.7, "max_new_tokens": 48, "batch_size": 8},
    "students": {**NATURAL["students"], "lora": "r=8,alpha=16", "epochs": 1.0, "batch_size": 4},
    "eval": {**NATURAL["eval"], "n_test": 8, "max_new_tokens": 48, "audit_texts": 4, "wrong_keys": 2,
             "lengths": [24, 48], "attacks": [["substitute", 0.3]], "n_boot": 300},
}

PRESETS = {"default": {}, "smoke": SMOKE, "frontier": FRONTIER, "gym-smoke": GYM_SMOKE, "smollm2": SMOLLM2,
           "smollm2-scratch": SMOLLM2_SCRATCH, "smollm2-gpu": SMOLLM2_GPU, "natural": NATURAL,
           "natural-smoke": NATURAL_SMOKE}


def preset_config(name: str) -> RunConfig:
    return from_presets(RunConfig, PRESETS, preset=name)


def load_config(path: str | Path | None = None, preset: str | None = None) -> RunConfig:
    """The resolved config: a preset, or a TOML file merged over the preset it names."""
    if path is not None and not Path(path).exists():
        raise UserError(f"config file {path} does not exist; pass a TOML file or --preset ({', '.join(PRESETS)})")
    return from_presets(RunConfig, PRESETS, path, preset)


def public_config(cfg: RunConfig, key: Key, source: str) -> dict:
    """The config as written to results/: the key replaced by its fingerprint and where it came from
    (`resolve_key`'s source: file, text, env or demo)."""
    if source == "text" and cfg.key.text == DEMO_KEY_TEXT:
        source = "demo"
    return {**as_dict(cfg), "key": {"fingerprint": key.fingerprint, "source": source, "file": cfg.key.file}}
