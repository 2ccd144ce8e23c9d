"""The experiment runner behind `antidistill run`: config -> stages -> results/NAME/.

Stages: teacher -> corpora -> students -> evaluations -> report. Every artifact lives in the cache
(`$ANTIDISTILL_CACHE/runs/<kind>/<hash>`), keyed by a hash of exactly the inputs it depends on, so
an unchanged config reruns nothing and a changed protection recomputes only its own branch. Corpus
generation and training resume inside their folders after a kill; small evaluation artifacts are
written atomically (temporary folder renamed into place), so an interrupted stage leaves nothing
that looks finished. results/NAME/ receives only tables, figures, the report and the config.
"""
from __future__ import annotations

import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from antidistill.watermark import Key, load_key, parse_protection
from antidistill.watermark.errors import UserError

RUNNER_VERSION = 1


@dataclass
class StageLog:
    """What each stage did: 'cached' (found) or 'computed', with seconds; the tests read it."""

    events: list = field(default_factory=list)

    def add(self, stage: str, item: str, status: str, seconds: float) -> None:
        self.events.append({"stage": stage, "item": item, "status": status, "seconds": round(seconds, 2)})

    def computed(self, stage: str | None = None) -> list[str]:
        return [e["item"] for e in self.events if e["status"] == "computed" and (stage is None or e["stage"] == stage)]


def _hash(obj) -> str:
    from antidistill.students.cache import config_hash

    return config_hash(obj)


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


class Runner:
    def __init__(self, config: dict, out: Path, cache_dir=None, quiet: bool = False):
        from antidistill.students.cache import cache_root

        self.cfg = config
        self.out = Path(out)
        self.cache_dir = cache_dir
        self.root = cache_root(cache_dir) / "runs"
        self.quiet = quiet
        self.log = StageLog()
        self._teacher = None
        self.seed = int(config["seed"])
        self.alpha = float(config["alpha"])
        if not 0 < self.alpha < 1:
            raise UserError(f"alpha must lie in (0, 1), got {self.alpha}")
        e = config["eval"]
        if e["audit_selection"] not in ("top1", "contrast"):
            raise UserError(f"eval.audit_selection must be 'top1' or 'contrast', got {e['audit_selection']!r}")
        if float(e["audit_temperature"]) < 0:
            raise UserError(f"eval.audit_temperature must be >= 0 (0: greedy), got {e['audit_temperature']}")
        self.protections = [parse_protection(s) for s in config["protections"]]
        specs = [p.spec for p in self.protections]
        if "none" not in specs:
            raise UserError("protections must include 'none' (the raw teacher every protection is compared with)")
        if len(set(specs)) != len(specs):
            raise UserError(f"protections listed twice: {specs}")
        from antidistill.students.attacks import parse_attacks

        self.attacks = parse_attacks(config.get("attacks", []))
        kcfg = config["key"]
        self.key = load_key(kcfg["file"]) if kcfg.get("file") else Key.from_text(kcfg["text"]) if kcfg.get("text") \
            else load_key(None)

    # ------------------------------------------------------------ cache plumbing
    def _dir(self, kind: str, inputs: dict) -> Path:
        return self.root / kind / _hash({"v": RUNNER_VERSION, **inputs})

    def _artifact(self, stage: str, item: str, kind: str, inputs: dict, build) -> Path:
        """A small artifact folder built by `build(tmp)` and renamed into place (all or nothing)."""
        from antidistill.students.cache import build_once

        target = self._dir(kind, inputs)
        if target.is_dir():
            self.log.add(stage, item, "cached", 0.0)
            return target
        t0 = time.perf_counter()
        build_once(target, build)
        dt = time.perf_counter() - t0
        self.log.add(stage, item, "computed", dt)
        _say(f"  {stage}: {item} ({dt:.1f}s)", self.quiet)
        return target

    # ------------------------------------------------------------ stage 1: teacher
    def teacher_id(self) -> str:
        t = self.cfg["teacher"]
        if t["model"] == "demo":
            from antidistill.students.teacher import TeacherConfig

            try:
                tc = TeacherConfig(**t.get("demo", {}))
            except TypeError as err:
                raise UserError(f"[teacher.demo]: {err}") from None
            return f"demo-{_hash(tc.as_dict())}"
        return str(t["model"])

    def teacher(self):
        if self._teacher is None:
            t0 = time.perf_counter()
            t = self.cfg["teacher"]
            if t["model"] == "demo":
                from antidistill.students.teacher import TeacherConfig, demo_teacher, teacher_dir

                tc = TeacherConfig(**t.get("demo", {}))
                fresh = not teacher_dir(tc, self.cache_dir).is_dir()
                self._teacher = demo_teacher(self.cache_dir, config=tc, progress=not self.quiet)
                self.teacher_card = json.loads((teacher_dir(tc, self.cache_dir) / "teacher_card.json").read_text())
                self.log.add("teacher", self.teacher_id(), "computed" if fresh else "cached", time.perf_counter() - t0)
            else:
                from antidistill.students.models import load_model

                self._teacher = load_model(t["model"], cache_dir=self.cache_dir)
                self.teacher_card = {}
                self.log.add("teacher", self.teacher_id(), "cached", time.perf_counter() - t0)
        return self._teacher

    # ------------------------------------------------------------ stage 2: corpora
    def corpus(self, prot, role: str) -> Path:
        """role 'train' (what students learn from) or 'audit' (the auditor's held-out protected texts)."""
        from antidistill.students.corpus import generate_corpus, read_manifest

        c = self.cfg["corpus"]
        n = c["n_prompts"] if role == "train" else self.cfg["eval"]["audit_texts"]
        seed = self.seed if role == "train" else self.seed + 1000
        inputs = {"teacher": self.teacher_id(), "protection": prot.spec, "role": role, "n": n, "seed": seed,
                  "key": self.key.fingerprint if prot.needs_key else None, "temperature": c["temperature"],
                  "max_new_tokens": c["max_new_tokens"]}
        target = self._dir("corpora", inputs)
        item = f"{prot.spec} ({role})"
        try:
            done = read_manifest(target).get("complete", False)
        except UserError:
            done = False
        if done:
            self.log.add("corpora", item, "cached", 0.0)
            return target
        teacher = self.teacher()  # timed as its own stage
        t0 = time.perf_counter()
        generate_corpus(teacher, target, protection=prot, key=self.key, prompts=n,
                        temperature=c["temperature"], max_new_tokens=c["max_new_tokens"], seed=seed,
                        batch_size=c["batch_size"], shard_size=max(c["batch_size"], 256), progress=not self.quiet,
                        teacher_name=self.teacher_id(), cache_dir=self.cache_dir)
        dt = time.perf_counter() - t0
        self.log.add("corpora", item, "computed", dt)
        _say(f"  corpora: {item} ({dt:.1f}s)", self.quiet)
        return target

    # ------------------------------------------------------------ stage 3: students
    def student(self, prot, corpus: Path | None = None) -> Path:
        """The student of prot's training corpus (with the config's attacks), or of `corpus`."""
        from antidistill.students.distill import train_student

        s = self.cfg["students"]
        if corpus is None:
            corpus = self.corpus(prot, "train")
            if self.attacks:
                return self._attacked_student(prot, corpus)
        inputs = {"corpus": corpus.name, "students": s, "seed": self.seed}
        target = self._dir("students", inputs)
        item = prot.spec
        if (target / "train_manifest.json").is_file() and (target / "model" / "config.json").is_file():
            self.log.add("students", item, "cached", 0.0)
            return target
        t0 = time.perf_counter()
        train_student(s["preset"], corpus, target, mode=s["mode"], lora=s["lora"] or None, epochs=s["epochs"],
                      max_steps=s["max_steps"] or None, lr=s["lr"] or None, batch_size=s["batch_size"], seed=self.seed,
                      save_steps=10_000, progress=not self.quiet, logging_steps=100,
                      cache_dir=self.cache_dir)
        dt = time.perf_counter() - t0
        self.log.add("students", item, "computed", dt)
        _say(f"  students: {item} ({dt:.1f}s)", self.quiet)
        return target

    def _attacked_student(self, prot, corpus: Path) -> Path:
        """The config's attacks on this student: its corpus attacked, then trained, then its weights
        attacked. A reweight attack's first-pass student is the unattacked one."""
        from antidistill.students.attacks import (apply_student_attack, attack_corpus_folder, by_stage,
                                                  clean_records, write_corpus)
        from antidistill.students.tokenizer import tokenizer_fingerprint

        specs = [a.spec for a in self.attacks]
        tok = self.teacher()[1]
        clean = clean_records(max(self.cfg["corpus"]["n_prompts"], 64), tok, seed=self.seed + 777)
        if by_stage(self.attacks, "corpus"):
            first = lambda: self._load(self.student(prot, corpus))  # noqa: E731 - trained only if needed
            corpus = self._artifact("students", f"{prot.spec} corpus attacked", "attacked-corpora",
                                    {"corpus": corpus.name, "attacks": specs, "seed": self.seed},
                                    lambda tmp: attack_corpus_folder(specs, corpus, tmp, tokenizer=tok, clean=clean,
                                                                     student=first, seed=self.seed))
        student = self.student(prot, corpus)
        for a in by_stage(self.attacks, "student"):
            source = {"teacher": "task-suite", "protection": "none", "tokenizer_fingerprint": tokenizer_fingerprint(tok)}
            clean_dir = self._artifact("students", "clean corpus", "clean-corpora", {"n": len(clean), "seed": self.seed},
                                       lambda tmp: write_corpus(clean, tmp, source_manifest=source, attacks=[]))
            out = self._dir("students", {"attack": a.spec, "of": student.name, "clean": clean_dir.name})
            student = apply_student_attack(a, student, out, clean_corpus=clean_dir, seed=self.seed,
                                           cache_dir=self.cache_dir)
        return student

    def _load(self, student_dir: Path | None):
        from antidistill.students.models import load_model

        if student_dir is None:  # the base student: the preset before any distillation
            return load_model(self.cfg["students"]["preset"], seed=self.seed, cache_dir=self.cache_dir)
        return load_model(str(student_dir / "model"), cache_dir=self.cache_dir)

    # ------------------------------------------------------------ stage 4: evaluations
    def grades(self, label: str, student_dir: Path | None) -> pd.DataFrame:
        from antidistill.students.tasks import make_split

        from ..measures.transfer import grade_items

        e = self.cfg["eval"]
        ident = student_dir.name if student_dir is not None else \
            {"base": self.cfg["students"]["preset"], "seed": self.seed}
        inputs = {"student": ident, "n_test": e["n_test"], "max_new_tokens": e["max_new_tokens"], "seed": self.seed}

        def build(tmp: Path):
            model, tok = self._load(student_dir)
            items = grade_items(model, tok, make_split("test", e["n_test"], seed=self.seed),
                                max_new_tokens=e["max_new_tokens"])
            items.to_csv(tmp / "items.csv", index=False)

        d = self._artifact("evaluations", f"grade {label}", "grades", inputs, build)
        return pd.read_csv(d / "items.csv").assign(student=label)

    def audit(self, prot, label: str, student_dir: Path, mode: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Audit one student with prot's key and with wrong keys on the same tuples."""
        from antidistill.students.corpus import read_corpus

        from ..measures.audit import generation_tuples, reading_tuples, reference_top1, score, wrong_keys

        e = self.cfg["eval"]
        texts = self.corpus(prot, "audit")
        inputs = {"student": student_dir.name, "texts": texts.name, "protection": prot.spec, "mode": mode,
                  "key": self.key.fingerprint, "wrong_keys": e["wrong_keys"], "seed": self.seed,
                  "max_new_tokens": self.cfg["corpus"]["max_new_tokens"], "rule": "auto/v2",
                  "selection": e["audit_selection"] if mode == "reading" else "generated",
                  "temperature": e["audit_temperature"],
                  "choice_filter": e["choice_filter"],
                  "reference": self.teacher_id() if e["choice_filter"] or e["audit_selection"] == "contrast" else None}

        if self.attacks:
            inputs["attacks"] = [a.spec for a in self.attacks]

        def build(tmp: Path):
            from antidistill.students.attacks import by_stage, decoding_settings

            model, tok = self._load(student_dir)
            corpus = read_corpus(texts)
            det = prot.detector(self.key)
            if mode == "reading":
                pairs = [(r["prompt_ids"], r["completion_ids"]) for r in corpus.records]
                ref = self.teacher()[0] if e["audit_selection"] == "contrast" else None
                tuples = reading_tuples(model, pairs, det.h, reference=ref)
            else:
                settings = {"temperature": e["audit_temperature"]}
                for a in by_stage(self.attacks, "decode"):  # the suspect's own decoding choices
                    settings.update(decoding_settings(a, model, tok, prompts=corpus.prompts, reference=self.teacher()[0],
                                                      seed=self.seed + 3,
                                                      max_new_tokens=self.cfg["corpus"]["max_new_tokens"]))
                tuples, comps = generation_tuples(model, tok, corpus.prompts, det.h,
                                                  max_new_tokens=self.cfg["corpus"]["max_new_tokens"],
                                                  seed=self.seed + 7, **settings)
                pairs = list(zip(corpus.prompts, comps))
            keep = None
            if e["choice_filter"]:
                keep = reference_top1(self.teacher()[0], pairs, det.h) < float(e["choice_filter"])
            rows, curves = [], []
            for kind, key in [("key", self.key)] + [("wrong key", k) for k in wrong_keys(e["wrong_keys"])]:
                r = score(prot.detector(key), tuples, mode=mode, keep=keep)
                rows.append({"key_kind": kind, **r.detection.as_dict()})
                curves.append(r.curve.assign(key_kind=kind, key_fingerprint=key.fingerprint))
            pd.DataFrame(rows).to_csv(tmp / "detections.csv", index=False)
            pd.concat(curves, ignore_index=True).to_csv(tmp / "curves.csv", index=False)

        d = self._artifact("evaluations", f"audit {label} with {prot.scheme} key ({mode})", "audits", inputs, build)
        tag = dict(protection=prot.spec, student=label, mode=mode)
        return pd.read_csv(d / "detections.csv").assign(**tag), pd.read_csv(d / "curves.csv").assign(**tag)

    def quality(self, corpora: dict) -> pd.DataFrame:
        from antidistill.students.corpus import read_corpus

        from ..measures.quality import teacher_quality

        inputs = {"corpora": {s: p.name for s, p in corpora.items()}, "reference": self.teacher_id()}

        def build(tmp: Path):
            model, tok = self.teacher()
            recs = {s: read_corpus(p).records for s, p in corpora.items()}
            teacher_quality(recs, reference=model, eos_id=tok.eos_token_id).to_csv(tmp / "quality.csv", index=False)

        return pd.read_csv(self._artifact("evaluations", "teacher quality", "quality", inputs, build) / "quality.csv")

    def detectability(self, corpora: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
        from antidistill.students.corpus import read_corpus

        from ..measures.detectability import detectability

        attacks = [("none", 0.0)] + [(a, float(r)) for a, r in self.cfg["eval"]["attacks"]]
        det_specs = [s for s in corpora if parse_protection(s).has_detector]
        inputs = {"corpora": {s: p.name for s, p in corpora.items()}, "attacks": attacks,
                  "key": self.key.fingerprint, "seed": self.seed}

        def build(tmp: Path):
            raw = read_corpus(corpora["none"])
            pos = {}
            for s in det_specs:
                c = read_corpus(corpora[s])
                pos[s] = (c.sequences, c.prompts)
            vocab = int(raw.manifest["vocab_size"])
            table, roc = detectability(pos, (raw.sequences, raw.prompts), self.key, vocab, attacks=attacks,
                                       seed=self.seed)
            table.to_csv(tmp / "detectability.csv", index=False)
            roc.to_csv(tmp / "roc.csv", index=False)

        d = self._artifact("evaluations", "detectability", "detectability", inputs, build)
        return pd.read_csv(d / "detectability.csv"), pd.read_csv(d / "roc.csv")

    # ------------------------------------------------------------ the whole run
    def run(self) -> dict:
        from ..measures.transfer import capability_transfer

        t_start = time.perf_counter()
        e = self.cfg["eval"]
        n_stages = 5
        _say(f"[1/{n_stages}] teacher: {self.teacher_id()}", self.quiet)
        _say(f"[2/{n_stages}] corpora: {len(self.protections)} protections x train"
             + (" + audit texts" if e["audit"] else ""), self.quiet)
        corpora = {p.spec: self.corpus(p, "train") for p in self.protections}
        detectable = [p for p in self.protections if p.has_detector]
        if e["audit"]:
            for p in detectable:
                self.corpus(p, "audit")
        _say(f"[3/{n_stages}] students: {self.cfg['students']['preset']} x {len(self.protections)}", self.quiet)
        students = {p.spec: self.student(p) for p in self.protections}
        _say(f"[4/{n_stages}] evaluations: " + ", ".join(k for k in ("quality", "detectability", "audit", "transfer")
                                                          if e[k]), self.quiet)
        res: dict = {}
        if e["quality"]:
            res["quality"] = self.quality(corpora)
        if e["detectability"] and detectable:
            res["detectability"], res["roc"] = self.detectability(corpora)
        if e["audit"] and detectable:
            dets, curves = [], []
            for p in detectable:
                for mode in e["audit_modes"]:
                    for label, sdir in ((p.spec, students[p.spec]), ("none", students["none"])):
                        d, c = self.audit(p, "raw" if label == "none" else label, sdir, mode)
                        dets.append(d)
                        curves.append(c)
            res["audit"] = pd.concat(dets, ignore_index=True)
            res["audit_curves"] = pd.concat(curves, ignore_index=True)
        if e["transfer"]:
            items = [self.grades("base", None)]
            items += [self.grades("raw" if s == "none" else s, d) for s, d in students.items()]
            res["items"] = pd.concat(items, ignore_index=True)
            res["transfer"] = capability_transfer(res["items"], base="base", raw="raw", n_boot=e["n_boot"],
                                                  seed=self.seed)
        _say(f"[5/{n_stages}] report: {self.out}", self.quiet)
        if self._teacher is None and self.cfg["teacher"]["model"] == "demo":
            self.teacher()  # cached: only to read its card for the report
        from .report import write_report

        meta = self.meta(time.perf_counter() - t_start)
        write_report(self.out, self.cfg, res, meta)
        return {"results": res, "log": self.log, "meta": meta, "out": self.out}

    def meta(self, seconds: float) -> dict:
        import torch
        import transformers

        from antidistill.students.corpus import _version

        return {
            "wall_seconds": round(seconds, 1), "key_fingerprint": self.key.fingerprint, "seed": self.seed,
            "teacher": self.teacher_id(), "teacher_card": getattr(self, "teacher_card", {}),
            "stages": self.log.events,
            "versions": {"antidistill": _version(), "python": platform.python_version(), "torch": torch.__version__,
                         "transformers": transformers.__version__, "numpy": np.__version__, "pandas": pd.__version__},
            "machine": {"platform": platform.platform(), "cpus": __import__("os").cpu_count(),
                        "torch_threads": torch.get_num_threads()},
        }


def run_experiment(config: dict, out, cache_dir=None, quiet: bool = False) -> dict:
    return Runner(config, Path(out), cache_dir=cache_dir, quiet=quiet).run()


def finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)
