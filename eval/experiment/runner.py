"""The experiment runner behind `antidistill run`: config -> stages -> results/NAME/.

Stages: teacher -> corpora -> students -> evaluations -> report. Every artifact lives in the cache
(`$ANTIDISTILL_CACHE/runs/<kind>/<hash>`), keyed by a hash of exactly the inputs it depends on, so
an unchanged config reruns nothing and a changed protection recomputes only its own branch. Corpus
generation and training resume inside their folders after a kill; small evaluation artifacts are
written atomically (temporary folder renamed into place), so an interrupted stage leaves nothing
that looks finished. results/NAME/ receives only tables, figures, the report and the config.
"""
from __future__ import annotations

import contextlib
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from antidistill.watermark import Key, parse_protection, resolve_key
from antidistill.watermark.errors import UserError

RUNNER_VERSION = 2


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


def cpu_info() -> dict:
    """CPU model and instruction-set flags (torch's CPU kernels, hence the last bits of every number,
    depend on them), torch's threads and the kernel level it dispatches to."""
    import torch

    model, flags = platform.processor() or "unknown", []
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name":
                model = value.strip()
            elif name.strip() == "flags" and not flags:
                flags = value.split()
    capability = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else None
    return {"cpu_model": model, "cpu_flags": " ".join(flags), "torch_cpu_capability": capability,
            "torch_threads": torch.get_num_threads(), "cpus": __import__("os").cpu_count(),
            "platform": platform.platform()}


@contextlib.contextmanager
def library_chatter(verbose: bool):
    """Without --verbose: no transformers progress bars ("Loading weights"), warnings or info lines."""
    if verbose:
        yield
        return
    from transformers.utils import logging as tlog

    level, bars = tlog.get_verbosity(), tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(level)
        if bars:
            tlog.enable_progress_bar()


class Runner:
    def __init__(self, config: dict, out: Path, cache_dir=None, quiet: bool = False, verbose: bool = False):
        from antidistill.students.cache import cache_root

        from .presets import DEMO_KEY_TEXT, check_config, expand_protections

        self.cfg = config
        self.out = Path(out)
        self.cache_dir = cache_dir
        self.root = cache_root(cache_dir) / "runs"
        self.quiet = quiet
        self.verbose = verbose and not quiet  # inner progress bars and library output
        self.log = StageLog()
        self.stage_seconds: dict[str, float] = {}  # filled by run(); meta() reads it
        # CPU seconds of this process and its finished workers per stage: unlike wall time, the cost
        # does not grow when other jobs share the machine (wall ~ cpu / cores on an idle one).
        self.stage_cpu_seconds: dict[str, float] = {}
        self._teacher = None
        self._clean: dict = {}  # the attacker's clean records per (count, seed), made once
        self._bar = None
        check_config(config)  # types and ranges (a config from Python, not only from a TOML file)
        self.seed = int(config["seed"])
        self.seeds = [self.seed + k for k in range(config["students"]["seeds"])]
        self.alpha = float(config["alpha"])
        self.sweeps = expand_protections(config["protections"])  # spec -> (family, swept parameter, value)
        self.protections = [parse_protection(s) for s in self.sweeps]
        specs = [p.spec for p in self.protections]
        if "none" not in specs:
            raise UserError("protections must include 'none' (the raw teacher every protection is compared with)")
        from antidistill.students.attacks import parse_attacks

        self.attacks = parse_attacks(config.get("attacks", []))
        kcfg = config["key"]
        self.key, self.key_source = resolve_key(text=kcfg["text"] or None, config_file=kcfg["file"] or None,
                                                default=Key.from_text(DEMO_KEY_TEXT))

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
        self.log.add(stage, item, "computed", time.perf_counter() - t0)
        return target

    # ------------------------------------------------------------ stage 1: teacher
    def teacher_id(self) -> str:
        t = self.cfg["teacher"]
        if t["model"] == "demo":
            from antidistill.students.models.teacher import TeacherConfig

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
                from antidistill.students.models.teacher import TeacherConfig, demo_teacher, teacher_dir

                tc = TeacherConfig(**t.get("demo", {}))
                fresh = not teacher_dir(tc, self.cache_dir).is_dir()
                self._teacher = demo_teacher(self.cache_dir, config=tc, progress=not self.quiet)  # the stage's bar
                self.teacher_card = json.loads((teacher_dir(tc, self.cache_dir) / "teacher_card.json").read_text())
                self.log.add("teacher", self.teacher_id(), "computed" if fresh else "cached", time.perf_counter() - t0)
            else:
                from antidistill.students.models.loader import load_model

                self._teacher = load_model(t["model"], cache_dir=self.cache_dir)
                self.teacher_card = {}
                self.log.add("teacher", self.teacher_id(), "cached", time.perf_counter() - t0)
        return self._teacher

    # ------------------------------------------------------------ stage 2: corpora
    def _corpus_inputs(self, prot, role: str) -> dict:
        """What a corpus is made from, its cache key: the students' corpus or the auditor's texts."""
        c = self.cfg["corpus"]
        return {"teacher": self.teacher_id(), "protection": prot.spec, "role": role,
                "n": c["n_prompts"] if role == "train" else self.cfg["eval"]["audit_texts"],
                "seed": self.seed if role == "train" else self.seed + 1000,
                "key": self.key.fingerprint if prot.needs_key else None, "temperature": c["temperature"],
                "max_new_tokens": c["max_new_tokens"]}

    def corpus_dir(self, prot, role: str) -> Path:
        return self._dir("corpora", self._corpus_inputs(prot, role))

    @staticmethod
    def _complete(target: Path) -> bool:
        from antidistill.students.corpus import read_manifest

        try:
            return read_manifest(target).get("complete", False)
        except UserError:
            return False

    def corpus(self, prot, role: str) -> Path:
        """role 'train' (what students learn from) or 'audit' (the auditor's held-out protected texts)."""
        from antidistill.students.protect.generate import generate_corpus

        c, inputs = self.cfg["corpus"], self._corpus_inputs(prot, role)
        target = self._dir("corpora", inputs)
        item = f"{prot.spec} ({role})"
        if self._complete(target):
            self.log.add("corpora", item, "cached", 0.0)
            return target
        teacher = self.teacher()  # timed as its own stage
        t0 = time.perf_counter()
        generate_corpus(teacher, target, protection=prot, key=self.key, prompts=inputs["n"],
                        temperature=c["temperature"], max_new_tokens=c["max_new_tokens"], seed=inputs["seed"],
                        batch_size=c["batch_size"], shard_size=max(c["batch_size"], 256), progress=self.verbose,
                        teacher_name=self.teacher_id(), cache_dir=self.cache_dir)
        self.log.add("corpora", item, "computed", time.perf_counter() - t0)
        return target

    def corpora(self, jobs: list, bar) -> list[Path]:
        """The corpora of `jobs` ((protection, role) pairs), in order; with students.workers > 1 the
        missing ones are generated that many at once, in processes with an equal share of the threads
        (a small teacher decodes faster as parallel single-thread jobs than as one job over several)."""
        import os
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from multiprocessing import get_context

        todo = [(p, role) for p, role in jobs if not self._complete(self.corpus_dir(p, role))]
        workers = min(int(self.cfg["students"]["workers"]), len(todo))
        if workers > 1:
            self.teacher()  # trained (or loaded) once here, before the workers read it from the cache
            threads = max(1, (os.cpu_count() or 1) // workers)
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(_generate, self.cfg, str(self.out), self.cache_dir, p.spec, role, threads):
                           f"{p.spec} ({role})" for p, role in todo}
                for f in as_completed(futures):
                    self.log.add("corpora", futures[f], "computed", f.result())
                    bar.set_postfix_str(futures[f])
                    bar.update(1)
        paths = []
        for p, role in jobs:
            if workers > 1 and (p, role) in todo:  # a worker made it (and logged it)
                paths.append(self.corpus_dir(p, role))
                continue
            bar.set_postfix_str(f"{p.spec} ({role})")
            paths.append(self.corpus(p, role))
            bar.update(1)
        return paths

    # ------------------------------------------------------------ stage 3: students
    def student_job(self, prot, seed: int, corpus: Path | None = None) -> tuple[Path, str, dict | None]:
        """Where the student distilled on prot's corpus (or on `corpus`, e.g. an attacked one) with
        training seed `seed` (its initialisation and data order; every seed learns from the same corpus)
        lives, its name, and the arguments of `train_student` that build it (None when it is cached)."""
        s = {k: v for k, v in self.cfg["students"].items() if k not in ("seeds", "workers")}
        corpus = corpus or self.corpus(prot, "train")
        target = self._dir("students", {"corpus": corpus.name, "students": s, "seed": seed})
        item = f"{prot.spec if prot is not None else corpus.name[:8]} (seed {seed})"
        if (target / "train_manifest.json").is_file() and (target / "model" / "config.json").is_file():
            return target, item, None
        return target, item, dict(
            student=s["preset"], corpus=str(corpus), out=str(target), mode=s["mode"], lora=s["lora"] or None,
            epochs=s["epochs"], max_steps=s["max_steps"] or None, lr=s["lr"] or None, batch_size=s["batch_size"],
            seed=seed, save_steps=10_000, progress=self.verbose, logging_steps=100, cache_dir=self.cache_dir)

    def students(self, bar) -> dict[str, dict[int, Path]]:
        """Every (protection, seed) student; with students.workers > 1 the trainings run in that many
        processes at once, each with an equal share of the CPU's threads (small models train faster
        as parallel single-thread jobs than as one job over several threads)."""
        if self.attacks:
            return self._attacked_students(bar)
        out: dict[str, dict[int, Path]] = {}
        todo = []
        for p in self.protections:
            for sd in self.seeds:
                target, item, job = self.student_job(p, sd)
                out.setdefault(p.spec, {})[sd] = target
                if job is None:
                    self.log.add("students", item, "cached", 0.0)
                    bar.update(1)
                else:
                    todo.append((item, _train, job))
        self.train_many(todo, bar)
        return out

    def train_many(self, todo: list, bar=None) -> None:
        """Run `todo` ((item, function, job) triples: `_train` or `_finetune` and its arguments),
        `students.workers` at a time in spawned processes, each logged under students with its seconds;
        `bar` (when given) advances by one per job."""
        import os
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from multiprocessing import get_context

        def done(item: str, seconds: float) -> None:
            self.log.add("students", item, "computed", seconds)
            if bar is not None:
                bar.set_postfix_str(item)
                bar.update(1)

        workers = min(int(self.cfg["students"]["workers"]), len(todo))
        if workers <= 1:
            for item, fn, job in todo:
                if bar is not None:
                    bar.set_postfix_str(item)
                done(item, fn(job))
            return
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(fn, job, threads): item for item, fn, job in todo}
            for f in as_completed(futures):
                done(futures[f], f.result())

    def _attacked_students(self, bar) -> dict[str, dict[int, Path]]:
        """attacked_student for every (protection, seed), the trainings run in parallel like the
        unattacked ones, in rounds: first-pass students (reweight), students of the attacked corpora,
        then each student attack in order. The same cache entries as attacked_student."""
        from antidistill.students.attacks import by_stage

        pairs = [(p, sd) for p in self.protections for sd in self.seeds]
        if any(a.name == "reweight" for a in self.attacks):
            self.train_many([(item, _train, job) for p, sd in pairs
                             for _, item, job in [self.student_job(p, sd)] if job is not None])
        corpora = {(p.spec, sd): self.attacked_corpus(p, sd) for p, sd in pairs}
        current, todo = {}, []
        for p, sd in pairs:
            target, item, job = self.student_job(p, sd, corpora[(p.spec, sd)])
            current[(p.spec, sd)] = target
            if job is None:
                bar.update(1)
            else:
                todo.append((item, _train, job))
        self.train_many(todo, bar)  # the bar counts these students; first passes and fine-tunes are extra
        for a in by_stage(self.attacks, "student"):
            todo = []
            for p, sd in pairs:
                target, item, job = self.student_attack_job(a, p, current[(p.spec, sd)], sd)
                current[(p.spec, sd)] = target
                if job is not None:
                    todo.append((item, _finetune, job))
            self.train_many(todo)
        out: dict[str, dict[int, Path]] = {}
        for p, sd in pairs:
            out.setdefault(p.spec, {})[sd] = current[(p.spec, sd)]
        return out

    def _student(self, prot, seed: int, corpus: Path) -> Path:
        """One student trained here (or found in the cache) on `corpus`."""
        target, item, job = self.student_job(prot, seed, corpus)
        self.log.add("students", item, "cached" if job is None else "computed", 0.0 if job is None else _train(job))
        return target

    def attacked_corpus(self, prot, seed: int) -> Path:
        """prot's training corpus after the config's corpus attacks (itself when there are none).
        Every seed shares one attacked corpus, except under reweight, whose weights come from that
        seed's first-pass (unattacked) student, trained here if it is not yet."""
        from antidistill.students.attacks import attack_corpus_folder, by_stage

        corpus = self.corpus(prot, "train")
        if not by_stage(self.attacks, "corpus"):
            return corpus
        specs = [a.spec for a in self.attacks]
        tok = self.teacher()[1]
        first = self._student(prot, seed, corpus) if any(a.name == "reweight" for a in self.attacks) else None
        return self._artifact("students", f"{prot.spec} corpus attacked", "attacked-corpora",
                              {"corpus": corpus.name, "attacks": specs, "seed": self.seed,
                               "first_pass": first.name if first else None},
                              lambda tmp: attack_corpus_folder(specs, corpus, tmp, tokenizer=tok, clean=self.clean(),
                                                               student=lambda: self._load(first, seed), seed=self.seed))

    def clean(self, n: int | None = None, seed: int | None = None) -> list[dict]:
        """The attacker's clean records: n task-suite traces drawn with `seed`, which the key never
        touched (default: as many as the corpus has prompts, seed + 777)."""
        from antidistill.students.attacks import clean_records

        n = max(self.cfg["corpus"]["n_prompts"], 64) if n is None else n
        seed = self.seed + 777 if seed is None else seed
        if (n, seed) not in self._clean:
            self._clean[(n, seed)] = clean_records(n, self.teacher()[1], seed=seed)
        return self._clean[(n, seed)]

    def clean_corpus(self, n: int | None = None, seed: int | None = None, records: list[dict] | None = None) -> Path:
        """clean(n, seed) saved as a corpus folder (or `records`, the first n of a larger draw with that
        seed), keyed by the teacher whose tokenizer encoded them, the count and the seed."""
        from antidistill.students.attacks import write_corpus
        from antidistill.students.models.tokenizer import tokenizer_fingerprint

        seed = self.seed + 777 if seed is None else seed
        records = self.clean(n, seed) if records is None else records
        tok = self.teacher()[1]
        source = {"teacher": "task-suite", "protection": "none", "tokenizer_fingerprint": tokenizer_fingerprint(tok),
                  "vocab_size": len(tok)}
        return self._artifact("students", f"clean corpus ({len(records)})", "clean-corpora",
                              {"teacher": self.teacher_id(), "n": len(records), "seed": seed},
                              lambda tmp: write_corpus(records, tmp, source_manifest=source, attacks=[]))

    def student_attack_job(self, attack, prot, student: Path, seed: int) -> tuple[Path, str, dict | None]:
        """Where `student` after one student attack (clean fine-tuning) lives, its name, and the
        arguments of `_finetune` (None when it is cached)."""
        clean_dir = self.clean_corpus()
        out = self._dir("students", {"attack": attack.spec, "of": student.name, "clean": clean_dir.name, "seed": seed})
        item = f"{attack.spec} of {prot.spec} (seed {seed})"
        if (out / "model" / "config.json").is_file():
            self.log.add("students", item, "cached", 0.0)
            return out, item, None
        return out, item, dict(spec=attack.spec, student_dir=str(student), out=str(out), clean_corpus=str(clean_dir),
                               seed=seed, cache_dir=self.cache_dir)

    def attacked_student(self, prot, seed: int) -> Path:
        """The config's attacks on prot's student of training seed `seed`, one after another in this
        process: its corpus attacked, then trained, then its weights attacked."""
        from antidistill.students.attacks import by_stage

        student = self._student(prot, seed, self.attacked_corpus(prot, seed))
        for a in by_stage(self.attacks, "student"):
            student, item, job = self.student_attack_job(a, prot, student, seed)
            if job is not None:
                self.log.add("students", item, "computed", _finetune(job))
        return student

    def _load(self, student_dir: Path | None, seed: int):
        from antidistill.students.models.loader import load_model

        if student_dir is None:  # the base student: the preset before any distillation
            return load_model(self.cfg["students"]["preset"], seed=seed, cache_dir=self.cache_dir)
        return load_model(str(student_dir / "model"), cache_dir=self.cache_dir)

    # ------------------------------------------------------------ stage 4: evaluations
    def grades(self, label: str, student_dir: Path | None, seed: int) -> pd.DataFrame:
        from antidistill.students.tasks.suite import make_split

        from ..measures.transfer import grade_items

        e = self.cfg["eval"]
        ident = student_dir.name if student_dir is not None else \
            {"base": self.cfg["students"]["preset"], "seed": seed}
        inputs = {"student": ident, "n_test": e["n_test"], "max_new_tokens": e["max_new_tokens"], "seed": self.seed}

        def build(tmp: Path):
            model, tok = self._load(student_dir, seed)
            items = grade_items(model, tok, make_split("test", e["n_test"], seed=self.seed),
                                max_new_tokens=e["max_new_tokens"])
            items.to_csv(tmp / "items.csv", index=False)

        d = self._artifact("evaluations", f"grade {label} (seed {seed})", "grades", inputs, build)
        return pd.read_csv(d / "items.csv").assign(student=label, seed=seed)

    def audit(self, prot, label: str, student_dir: Path, mode: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Audit one student with prot's key and with wrong keys on the same tuples."""
        from ..measures.audit import score, wrong_keys

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
            from antidistill.students.attacks import by_stage

            model, tok = self._load(student_dir, seed)
            tuples, keep = self.audit_tuples(prot, model, tok, mode, by_stage(self.attacks, "decode"))
            rows, curves = [], []
            for kind, key in [("key", self.key)] + [("wrong key", k) for k in wrong_keys(e["wrong_keys"])]:
                r = score(prot.detector(key), tuples, mode=mode, keep=keep)
                rows.append({"key_kind": kind, **r.detection.as_dict()})
                curves.append(r.curve.assign(key_kind=kind, key_fingerprint=key.fingerprint))
            pd.DataFrame(rows).to_csv(tmp / "detections.csv", index=False)
            pd.concat(curves, ignore_index=True).to_csv(tmp / "curves.csv", index=False)

        d = self._artifact("evaluations", f"audit {label} (seed {seed}) with {prot.scheme} key ({mode})", "audits",
                           inputs, build)
        tag = dict(protection=prot.spec, student=label, mode=mode, seed=seed)
        return pd.read_csv(d / "detections.csv").assign(**tag), pd.read_csv(d / "curves.csv").assign(**tag)

    def audit_tuples(self, prot, model, tok, mode: str, decode_attacks=()):
        """A suspect's audit tuples on prot's audit texts, and the choice-point mask (None: every
        position). Reading mode teacher-forces the texts; generation mode answers their prompts,
        decoded the audit's way unless the suspect's own `decode_attacks` change it."""
        from antidistill.students.attacks import decoding_settings
        from antidistill.students.corpus import read_corpus

        from ..measures.audit import generation_tuples, reading_tuples, reference_top1

        e = self.cfg["eval"]
        mnt = self.cfg["corpus"]["max_new_tokens"]
        corpus = read_corpus(self.corpus(prot, "audit"))
        h = prot.detector(self.key).h
        if mode == "reading":
            pairs = [(r["prompt_ids"], r["completion_ids"]) for r in corpus.records]
            ref = self.teacher()[0] if e["audit_selection"] == "contrast" else None
            tuples = reading_tuples(model, pairs, h, reference=ref)
        else:
            settings = {"temperature": e["audit_temperature"]}
            for a in decode_attacks:  # the suspect's own decoding choices
                settings.update(decoding_settings(a, model, tok, prompts=corpus.prompts, reference=self.teacher()[0],
                                                  seed=self.seed + 3, max_new_tokens=mnt))
            tuples, comps = generation_tuples(model, tok, corpus.prompts, h, max_new_tokens=mnt, seed=self.seed + 7,
                                              **settings)
            pairs = list(zip(corpus.prompts, comps))
        keep = reference_top1(self.teacher()[0], pairs, h) < float(e["choice_filter"]) if e["choice_filter"] else None
        return tuples, keep

    def quality(self, corpora: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The teacher-quality table and the per-prompt correctness of each corpus (for the frontier)."""
        from antidistill.students.corpus import read_corpus

        from ..measures.quality import correctness, teacher_quality

        inputs = {"corpora": {s: p.name for s, p in corpora.items()}, "reference": self.teacher_id()}

        def build(tmp: Path):
            model, tok = self.teacher()
            recs = {s: read_corpus(p).records for s, p in corpora.items()}
            teacher_quality(recs, reference=model, eos_id=tok.eos_token_id).to_csv(tmp / "quality.csv", index=False)
            items = [correctness(r).assign(protection=s) for s, r in recs.items()]
            pd.concat(items, ignore_index=True).to_csv(tmp / "items.csv", index=False)

        d = self._artifact("evaluations", "teacher quality", "quality", inputs, build)
        return pd.read_csv(d / "quality.csv"), pd.read_csv(d / "items.csv")

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
    def _stage(self, k: int, name: str, total: int):
        """One progress bar per stage (none with --quiet); its wall time goes to run.json."""
        from tqdm.auto import tqdm

        self.stage_seconds[name] = -time.perf_counter()
        self.stage_cpu_seconds[name] = -_cpu_seconds()
        return tqdm(total=total, desc=f"[{k}/5] {name}", unit="item", disable=self.quiet, file=sys.stderr,
                    leave=True, dynamic_ncols=True)

    def _end(self, bar, name: str) -> None:
        self.stage_seconds[name] = round(self.stage_seconds[name] + time.perf_counter(), 1)
        self.stage_cpu_seconds[name] = round(self.stage_cpu_seconds[name] + _cpu_seconds(), 1)
        bar.close()

    def run(self) -> dict:
        from antidistill.students.cache import check_out_dir
        from antidistill.watermark.errors import output_lock

        check_out_dir(self.out)  # an --out that is a file, before any stage starts
        with output_lock(self.out, "results folder"), library_chatter(self.verbose):
            return self._run()

    def _run(self) -> dict:
        from ..measures.transfer import capability_transfer

        t_start = time.perf_counter()
        e = self.cfg["eval"]
        detectable = [p for p in self.protections if p.has_detector]

        t0, c0 = time.perf_counter(), _cpu_seconds()
        if self.cfg["teacher"]["model"] == "demo":
            from antidistill.students.models.teacher import TeacherConfig, teacher_dir

            if not teacher_dir(TeacherConfig(**self.cfg["teacher"].get("demo", {})), self.cache_dir).is_dir() \
                    and not self.quiet:  # its training bar is this stage's bar
                print(f"[1/5] teacher: training {self.teacher_id()} (first use, then cached)", file=sys.stderr)
            self.teacher()
        bar = self._stage(1, "teacher", 1)
        bar.update(1)
        self._end(bar, "teacher")
        self.stage_seconds["teacher"] = round(time.perf_counter() - t0, 1)  # training included
        self.stage_cpu_seconds["teacher"] = round(_cpu_seconds() - c0, 1)

        jobs = [(p, "train") for p in self.protections] + ([(p, "audit") for p in detectable] if e["audit"] else [])
        bar = self._stage(2, "corpora", len(jobs))
        corpora = {}
        for (p, role), path in zip(jobs, self.corpora(jobs, bar)):
            if role == "train":
                corpora[p.spec] = path
        self._end(bar, "corpora")

        bar = self._stage(3, "students", len(self.protections) * len(self.seeds))
        students = self.students(bar)
        self._end(bar, "students")

        n_eval = int(e["quality"]) + int(e["detectability"] and bool(detectable)) \
            + (len(detectable) * len(e["audit_modes"]) * 2 * len(self.seeds) if e["audit"] else 0) \
            + ((len(self.protections) + 1) * len(self.seeds) if e["transfer"] else 0)
        bar = self._stage(4, "evaluations", n_eval)
        res: dict = {}
        if e["quality"]:
            bar.set_postfix_str("teacher quality")
            res["quality"], res["teacher_items"] = self.quality(corpora)
            bar.update(1)
        if e["detectability"] and detectable:
            bar.set_postfix_str("detectability")
            res["detectability"], res["roc"] = self.detectability(corpora)
            bar.update(1)
        if e["audit"] and detectable:
            dets, curves = [], []
            for p in detectable:
                for mode in e["audit_modes"]:
                    for label, spec in ((p.spec, p.spec), ("raw", "none")):
                        for sd in self.seeds:
                            bar.set_postfix_str(f"audit {label} seed {sd} ({mode})")
                            d, c = self.audit(p, label, students[spec][sd], mode, sd)
                            dets.append(d)
                            curves.append(c)
                            bar.update(1)
            res["audit"] = pd.concat(dets, ignore_index=True)
            res["audit_curves"] = pd.concat(curves, ignore_index=True)
        if e["transfer"]:
            items = []
            for label, spec in [("base", None)] + [("raw" if s == "none" else s, s) for s in students]:
                for sd in self.seeds:
                    bar.set_postfix_str(f"grade {label} seed {sd}")
                    items.append(self.grades(label, students[spec][sd] if spec else None, sd))
                    bar.update(1)
            res["items"] = pd.concat(items, ignore_index=True)
            res["transfer"] = capability_transfer(res["items"], base="base", raw="raw", n_boot=e["n_boot"],
                                                  seed=self.seed)
        if e["quality"] and e["transfer"]:
            from ..measures.frontier import frontier

            students_by_spec = res["items"].assign(student=res["items"]["student"].replace({"raw": "none"}))
            res["frontier"] = frontier(res["teacher_items"], students_by_spec, self.sweeps, n_boot=e["n_boot"],
                                       none_on_curve=float(self.cfg["corpus"]["temperature"]) == 1.0, seed=self.seed)
        self._end(bar, "evaluations")

        if self._teacher is None and self.cfg["teacher"]["model"] == "demo":
            self.teacher()  # cached: only to read its card for the report
        from .report import write_report

        res["sweeps"] = self.sweeps
        meta = self.meta(time.perf_counter() - t_start)  # up to the report, which takes seconds
        bar = self._stage(5, "report", 1)
        write_report(self.out, public_config(self.cfg, self.key, self.key_source), res, meta)
        bar.update(1)
        self._end(bar, "report")
        meta["stage_seconds"] = self.stage_seconds
        meta["stage_cpu_seconds"] = self.stage_cpu_seconds
        return {"results": res, "log": self.log, "meta": meta, "out": self.out}

    def meta(self, seconds: float) -> dict:
        import torch
        import transformers

        from antidistill.students.corpus import antidistill_version

        return {
            "wall_seconds": round(seconds, 1), "stage_seconds": dict(self.stage_seconds),
            "stage_cpu_seconds": dict(self.stage_cpu_seconds),
            "key_fingerprint": self.key.fingerprint, "seed": self.seed, "training_seeds": self.seeds,
            "teacher": self.teacher_id(), "teacher_card": getattr(self, "teacher_card", {}),
            "stages": self.log.events,
            "versions": {"antidistill": antidistill_version(), "python": platform.python_version(), "torch": torch.__version__,
                         "transformers": transformers.__version__, "numpy": np.__version__, "pandas": pd.__version__},
            "machine": cpu_info(),
            "student_workers": int(self.cfg["students"]["workers"]),
        }


def public_config(cfg: dict, key: Key, source: str) -> dict:
    """The config as written to results/: the key replaced by its fingerprint and where it came from
    (`resolve_key`'s source: file, text, env or demo)."""
    from .presets import DEMO_KEY_TEXT

    if source == "text" and cfg["key"]["text"] == DEMO_KEY_TEXT:
        source = "demo"
    return {**cfg, "key": {"fingerprint": key.fingerprint, "source": source, "file": cfg["key"].get("file", "")}}


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its children that have ended (pool workers)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _generate(cfg: dict, out: str, cache_dir, spec: str, role: str, threads: int) -> float:
    """Generate one corpus in a worker process with `threads` torch threads; seconds."""
    import torch

    torch.set_num_threads(threads)
    runner = Runner(cfg, Path(out), cache_dir=cache_dir, quiet=True)
    t0 = time.perf_counter()
    with library_chatter(False):
        runner.corpus(parse_protection(spec), role)
    return time.perf_counter() - t0


def _train(job: dict, threads: int | None = None) -> float:
    """Train one student (in this process, or in a worker with `threads` torch threads); seconds."""
    import torch

    from antidistill.students.training.distill import train_student

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    with library_chatter(job["progress"]):
        train_student(**job)
    return time.perf_counter() - t0


def _finetune(job: dict, threads: int | None = None) -> float:
    """One student attack (clean fine-tuning of a trained student), here or in a worker; seconds."""
    import torch

    from antidistill.students.attacks import apply_student_attack

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    with library_chatter(False):
        apply_student_attack(job["spec"], job["student_dir"], job["out"], clean_corpus=job["clean_corpus"],
                             seed=job["seed"], cache_dir=job["cache_dir"])
    return time.perf_counter() - t0


def run_experiment(config: dict, out, cache_dir=None, quiet: bool = False, verbose: bool = False) -> dict:
    return Runner(config, Path(out), cache_dir=cache_dir, quiet=quiet, verbose=verbose).run()


def finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)
