"""`antidistill evidence`: the published findings about attacks, reproduced on the demo bench.

- E1 (Sander et al. 2024): audit log10 p against the protected fraction rho of the student's data;
  clean students give uniform p-values (many keys); without dedup clean students look radioactive.
- E2 (Gu et al. 2024): students distilled on KGW and Gumbel samples learn the watermark; continued
  fine-tuning on clean data fades it (after how many steps, per scheme).
- E4 (Pan et al. 2025; DistillGuard 2026): per attack, the attacker's capability (student accuracy,
  CIs over seeds and items) beside the auditor's evidence (log10 p, reading and generation modes,
  nulls): rewriting weakens detection and barely hurts the student; removing the chain of thought
  hurts the student far more.

The teacher, corpora, students and grading are the runner's (`Lab`: same cache, so a student trained
on an unattacked corpus with the runner's settings is the runner's student). The findings are
planned in rounds (`plan` asks for what it can see; a reweighted corpus needs its first-pass
student, a filter that drops nothing reuses its source), then measured (`e1`, `e2`, `e4`).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

from antidistill.students.cache import check_out_dir
from antidistill.watermark import parse_protection
from antidistill.watermark.errors import output_lock

from ..core.config import as_dict
from ..core.jobs import Job, Scheduler, Stages
from . import measures, work
from .config import public_config
from .evidence_config import MODES, EvidenceConfig, evidence_config
from .evidence_report import write_evidence
from .lab import LOCAL, Lab, ready, run_rounds
from .results import E1Results, E2Results, E4Results, EvidenceResults
from .runner import meta

__all__ = ["Evidence", "evidence_config", "run_evidence"]


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


class Evidence:
    """One `antidistill evidence` run: where each finding's corpora, students and fine-tunes live
    (through the runner's `Lab`), the planner that asks for them, and the three measurements.
    Owns the findings' choices (which corpus each row trains on), never how an artifact is made."""

    def __init__(self, cfg: EvidenceConfig, out, cache_dir=None, quiet: bool = False):
        self.cfg = cfg
        self.out = Path(out)
        check_out_dir(self.out)  # an --out that is a file, before the cache or any stage is touched
        self.quiet = quiet
        self.lab = Lab(cfg.run, cache_dir, quiet=quiet)
        self.stages = Stages(quiet)

    # ------------------------------------------------------------ where things live
    def source(self, spec: str) -> Path:
        return self.lab.corpus(self.lab.protections[parse_protection(spec).spec])

    def clean_records(self) -> tuple[int, int]:
        """(n, seed) of the attacker's clean records: enough for E2's fine-tuning and a whole corpus."""
        return max(self.cfg.e2.clean_records, self.cfg.run.corpus.n_prompts), self.cfg.clean_seed

    def mixed(self, spec: str, rho: float) -> tuple[Path, Job | None]:
        """E1: a fraction rho of the training records from spec's corpus, the rest raw; its job."""
        if rho in (0.0, 1.0):
            return self.source("none" if rho == 0.0 else spec), None
        raw, marked = self.source("none"), self.source(spec)
        target = self.lab.store.path("mixed-corpora", {"raw": raw.name, "marked": marked.name, "rho": rho,
                                                       "seed": self.lab.seed})
        edit = work.CorpusEdit(self.cfg.run.teacher, self.lab.cache_dir, target, raw, self.lab.seed, marked=marked,
                               rho=rho, task=self.cfg.run.task)
        return target, Job(LOCAL, f"{spec} at rho={rho:g}", target, work.mix, edit, after=(raw, marked))

    def attacked(self, spec: str, attack: str, seed: int) -> tuple[Path, Job]:
        """spec's training corpus after one corpus attack, and its job. Only reweighting depends on
        the student seed (its gradient is the seed's first-pass student's)."""
        a = work.parse_attack(attack)
        source = self.source(spec)
        first = self.lab.student(source, seed) if a.name == "reweight" else None
        target = self.lab.store.path("attacked-corpora", {
            "corpus": source.name, "attack": a.spec, "seed": seed if first else self.lab.seed,
            "first_pass": first.name if first else None, "clean_seed": self.cfg.clean_seed})
        edit = work.CorpusEdit(self.cfg.run.teacher, self.lab.cache_dir, target, source, self.lab.seed, (a.spec,),
                               first, self.clean_records(), task=self.cfg.run.task)
        after = (source,) + ((first,) if first else ())
        return target, Job(LOCAL, f"{a.spec} on {spec}", target, work.attack, edit, after=after)

    def trains_on(self, spec: str, attack: str, seed: int) -> Path | None:
        """The corpus a student of `attack` on spec trains on (None until it is made): the attacked
        corpus, or the source itself when a filter or dedup dropped nothing (its student is reused)."""
        target, _ = self.attacked(spec, attack, seed)
        if not target.is_dir():
            return None
        if work.parse_attack(attack).name in ("filter", "dedup") and \
                work.records(target) == work.records(self.source(spec)):
            return self.source(spec)
        return target

    def finetuned(self, student: Path, steps: int, seed: int) -> tuple[Path, Job | None]:
        """E2: `student` fine-tuned on clean data for `steps` (itself at 0), and its job."""
        if steps == 0:
            return student, None
        spec = f"finetune:steps={steps},lr={self.cfg.e2.lr},batch_size={self.cfg.run.students.batch_size}"
        clean = self.lab.store.path("clean-corpora", self.lab.clean_corpus_inputs(*self.clean_records(),
                                                                                   take=self.cfg.e2.clean_records))
        target = self.lab.store.path("students", {"finetune_of": student.name, "attack": spec, "clean": clean.name,
                                                  "seed": seed})
        args = dict(spec=spec, student_dir=str(student), out=str(target), clean_corpus=str(clean), seed=seed,
                    cache_dir=self.lab.cache_dir)
        return target, Job("students", f"{spec} of {student.name[:8]}", target, work.finetune, args,
                           after=(student,), complete=work.model_complete)

    # ------------------------------------------------------------ the findings' rows
    def e4_rows(self, seed: int) -> list[tuple[str, Path | None]]:
        """E4's (attack, training corpus) rows for one seed; None: not made yet."""
        spec = self.cfg.e4.protection
        return [("none (raw teacher)", self.source("none")), ("none", self.source(spec))] + \
            [(a, self.trains_on(spec, a, seed)) for a in self.cfg.e4.corpus_attacks]

    def denying_rows(self, seed: int) -> list[tuple[str, str, Path | None]]:
        """The adaptive attacker's (protection, attack, training corpus) rows for one seed."""
        d = self.cfg.e4.denying
        rows = [("none", "none", self.source("none"))] if d.protections else []
        for spec in (parse_protection(s).spec for s in d.protections):
            rows += [(spec, "none", self.source(spec))] + [(spec, a, self.trains_on(spec, a, seed)) for a in d.attacks]
        return rows

    def corpus_edits(self) -> list[Job]:
        jobs = [self.mixed(self.cfg.e1.protection, rho)[1] for rho in self.cfg.e1.rhos]
        attacks = [(self.cfg.e4.protection, a) for a in self.cfg.e4.corpus_attacks] + \
            [(s, a) for s in self.cfg.e4.denying.protections for a in self.cfg.e4.denying.attacks]
        jobs += [self.attacked(s, a, seed)[1] for seed in self.cfg.seeds for s, a in attacks]
        return [j for j in jobs if j is not None]

    def wanted_students(self) -> list[tuple[Path, int]]:
        """Every (training corpus, seed) a finding grades, among the corpora made so far."""
        e1 = self.cfg.e1
        out = [(self.mixed(e1.protection, rho)[0], seed) for rho in e1.rhos for seed in self.cfg.seeds]
        out += [(self.source(s), self.cfg.seeds[0]) for s in self.cfg.e2.protections]
        for seed in self.cfg.seeds:
            out += [(c, seed) for _, c in self.e4_rows(seed)] + [(c, seed) for *_, c in self.denying_rows(seed)]
        return [(c, s) for c, s in out if c is not None and c.is_dir() and work.records(c) > 0]

    def plan(self) -> list[Job]:
        """The jobs the findings need that can run now, given what exists."""
        jobs = self.corpus_edits()
        jobs += [self.lab.student_job(c, s, f"{c.name[:8]} seed {s}") for c, s in self.wanted_students()]
        tunes = [self.finetuned(self.lab.student(self.source(spec), self.cfg.seeds[0]), steps, self.cfg.seeds[0])[1]
                 for spec in self.cfg.e2.protections for steps in self.cfg.e2.steps]
        jobs = ready(jobs + [j for j in tunes if j is not None])
        if any(j.fn is work.finetune for j in jobs):  # their clean data, made here (small) before any runs
            self.lab.clean_corpus(*self.clean_records(), take=self.cfg.e2.clean_records)
        return jobs

    def prepare(self) -> None:
        """Every corpus, student and fine-tune the findings need, made before any is measured."""
        lab, workers = self.lab, self.cfg.run.students.workers
        jobs = [lab.corpus_job(lab.protections[s], "train") for s in self.cfg.specs_used()]
        jobs += [lab.corpus_job(lab.protections[s], "audit") for s in self.cfg.specs_audited()]
        with self.stages.stage("corpora", sum(j.cost for j in jobs), desc="[evidence] corpora") as bar:
            Scheduler(workers, lab.log, threads=lab.cfg.threads).run(jobs, bar)
        with self.stages.stage("students", 0, desc="[evidence] attacks and trainings") as bar:
            run_rounds(self.plan, lab, workers, bar)

    # ------------------------------------------------------------ the three findings
    def e1(self) -> E1Results:
        c, lab = self.cfg.e1, self.lab
        spec = parse_protection(c.protection).spec
        grades, audits, nulls = [], [], []
        for rho in c.rhos:
            corpus = self.mixed(spec, rho)[0]
            for seed in self.cfg.seeds:
                sdir = lab.student(corpus, seed)
                grades.append(measures.grades(lab, f"rho={rho:g}/seed={seed}", sdir, seed).assign(rho=rho))
                for mode in c.modes:
                    audits.append(measures.evidence_audit(lab, spec, sdir, mode).assign(rho=rho, seed=seed))
                    if rho == 0 and c.null_keys:
                        nulls.append(measures.key_null(lab, spec, sdir, mode, c.null_keys).assign(seed=seed))
        return E1Results(pd.concat(grades, ignore_index=True), pd.concat(audits, ignore_index=True),
                         pd.concat(nulls, ignore_index=True) if nulls else None)

    def e2(self) -> E2Results:
        lab, seed = self.lab, self.cfg.seeds[0]
        grades, audits = [], []
        for spec in (parse_protection(s).spec for s in self.cfg.e2.protections):
            base = lab.student(self.source(spec), seed)
            for steps in self.cfg.e2.steps:
                sdir = self.finetuned(base, steps, seed)[0]
                grades.append(measures.grades(lab, f"{spec}+ft{steps}", sdir, seed)
                              .assign(protection=spec, steps=steps))
                for mode in MODES:
                    audits.append(measures.evidence_audit(lab, spec, sdir, mode).assign(steps=steps))
        return E2Results(pd.concat(grades, ignore_index=True), pd.concat(audits, ignore_index=True))

    def e4(self) -> E4Results:
        lab, spec = self.lab, parse_protection(self.cfg.e4.protection).spec
        grades, audits, sizes, denied = [], [], [], []
        for seed in self.cfg.seeds:
            base_corpus = self.source(spec)
            for attack, corpus in self.e4_rows(seed):
                n = work.records(corpus)
                sizes.append({"attack": attack, "seed": seed, "records": n, "same_as_source": corpus == base_corpus,
                              "effective_records": work.effective_records(corpus, n)})
                if n == 0:  # e.g. nothing verifies: no student to train, reported as such
                    continue
                sdir = lab.student(corpus, seed)
                grades.append(measures.grades(lab, f"{attack}/seed={seed}", sdir, seed).assign(attack=attack))
                for mode in MODES:
                    audits.append(measures.evidence_audit(lab, spec, sdir, mode).assign(attack=attack, seed=seed))
            base = lab.student(base_corpus, seed)
            for attack in self.cfg.e4.decode_attacks:
                audits.append(measures.evidence_audit(lab, spec, base, "generation", decode=attack)
                              .assign(attack=attack, seed=seed))
            denied += self.denying(seed)
        return E4Results(pd.concat(grades, ignore_index=True), pd.concat(audits, ignore_index=True),
                         pd.DataFrame(sizes), pd.concat(denied, ignore_index=True) if denied else None)

    def denying(self, seed: int) -> list[pd.DataFrame]:
        """Grades of the raw student, each capability-denying protection's student, and that
        protection's corpus after each adaptive attack (one seed)."""
        out = []
        for spec, attack, corpus in self.denying_rows(seed):
            n = work.records(corpus)
            if n == 0:
                continue
            label = "none (raw teacher)" if spec == "none" else f"{spec}+{attack}"
            eff = float(n) if spec == "none" else work.effective_records(corpus, n)
            out.append(measures.grades(self.lab, f"{label}/seed={seed}", self.lab.student(corpus, seed), seed)
                       .assign(protection=spec, attack=attack, records=n, effective_records=eff))
        return out

    # ------------------------------------------------------------ the whole run
    def run(self) -> dict:
        with output_lock(self.out, "results folder"):
            return self._run()

    def _run(self) -> dict:
        t0, lab = time.perf_counter(), self.lab
        _say(f"[evidence] teacher {lab.teacher_id}, seeds {list(self.cfg.seeds)}", self.quiet)
        lab.teacher()
        _say("[evidence] corpora and students", self.quiet)
        t = time.perf_counter()
        self.prepare()
        seconds = {"training": round(time.perf_counter() - t, 1)}
        res = EvidenceResults()
        public = {**as_dict(self.cfg), "run": public_config(self.cfg.run, lab.key, lab.key_source)}
        # The report is rewritten after each finding, so a run cut short keeps what it found.
        for name in ("e4", "e2", "e1"):
            _say(f"[evidence] {name.upper()}", self.quiet)
            t = time.perf_counter()
            setattr(res, name, getattr(self, name)())
            seconds[name] = round(time.perf_counter() - t, 1)
            meta_ = meta(lab, self.stages, time.perf_counter() - t0, lab.teacher_card())
            meta_["finding_seconds"] = seconds
            meta_["findings_done"] = res.done()
            write_evidence(self.out, public, res, meta_)
        return {"results": res, "meta": meta_, "out": self.out, "log": lab.log}


def run_evidence(cfg: EvidenceConfig, out, cache_dir=None, quiet: bool = False) -> dict:
    return Evidence(cfg, out, cache_dir=cache_dir, quiet=quiet).run()
