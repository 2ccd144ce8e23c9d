"""The experiment runner behind `antidistill run`: config -> stages -> results/NAME/.

Stages: teacher -> corpora -> students -> evaluations -> report. Corpora and students are jobs
(`Lab` says where each lives and how it is made) run by the one scheduler; evaluations are small
store artifacts read by `measures`; the report reads a `RunResults`. Corpus generation and training
resume inside their folders after a kill; small artifacts are written all or nothing. results/NAME/
receives only tables, figures, the report and the config.
"""
from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import transformers

from antidistill.students.attacks import by_stage
from antidistill.students.cache import check_out_dir
from antidistill.students.corpus import antidistill_version
from antidistill.watermark.errors import output_lock

from ..core.jobs import Job, Scheduler, Stages, library_chatter, threads_per_process, torch_threads
from ..measures.frontier import frontier
from ..measures.transfer import capability_transfer
from . import measures, work
from .config import RunConfig, public_config
from .lab import Lab, ready, run_rounds
from .report import write_report
from .results import CONCAT, RunResults

__all__ = ["Runner", "RunResults", "run_experiment", "library_chatter", "cpu_info"]


def cpu_info() -> dict:
    """CPU model and instruction-set flags (torch's CPU kernels, hence the last bits of every number,
    depend on them), torch's threads and the kernel level it dispatches to."""
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
            "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "platform": platform.platform()}


def meta(lab: Lab, stages: Stages, seconds: float, card: dict) -> dict:
    """run.json: what ran where, with which versions, and how long each stage took."""
    return {
        "wall_seconds": round(seconds, 1), "stage_seconds": dict(stages.seconds),
        "stage_cpu_seconds": dict(stages.cpu_seconds),
        "key_fingerprint": lab.key.fingerprint, "seed": lab.seed, "training_seeds": lab.seeds.training,
        "teacher": lab.teacher_id, "task": lab.task.spec, "teacher_card": card, "stages": lab.log.events,
        "versions": {"antidistill": antidistill_version(), "python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "numpy": np.__version__, "pandas": pd.__version__},
        "machine": cpu_info(),
        "student_workers": lab.cfg.students.workers,
        "threads": lab.cfg.threads or "auto (the free cores, per stage; each computed job's count in `stages`)",
    }


class Runner:
    """One `antidistill run`: plans the corpora and students of a config as jobs, runs them stage by
    stage (one progress bar each), measures, and writes results/NAME/. Owns the stage order and the
    results; where artifacts live is the `Lab`'s, how each is measured is `measures`'."""

    def __init__(self, config: RunConfig, out, cache_dir=None, quiet: bool = False, verbose: bool = False):
        self.cfg = config
        self.out = Path(out)
        self.lab = Lab(config, cache_dir, quiet=quiet, verbose=verbose)
        self.log = self.lab.log
        self.stages = Stages(quiet)
        self.quiet = quiet
        self.detectable = [p for p in self.lab.protections.values() if p.has_detector]
        self.stage_threads: dict[str, int] = {}  # torch threads of the in-process stages (jobs: in `stages`)

    # ------------------------------------------------------------ plans
    def corpus_jobs(self) -> list[Job]:
        audited = self.detectable if self.cfg.eval.audit else []
        return [self.lab.corpus_job(p, "train") for p in self.lab.protections.values()] + \
            [self.lab.corpus_job(p, "audit") for p in audited]

    def student_chains(self) -> dict[tuple[str, int], tuple[Path, list[Job]]]:
        """Every (protection, seed) student: its folder and the jobs that make it, in order."""
        out = {}
        for p in self.lab.protections.values():
            for sd in self.lab.seeds.training:
                if self.lab.attacks:
                    out[(p.spec, sd)] = self.lab.attacked_student_jobs(p, sd)
                else:
                    corpus = self.lab.corpus(p)
                    out[(p.spec, sd)] = (self.lab.student(corpus, sd), [self.lab.student_job(corpus, sd,
                                                                                            f"{p.spec} (seed {sd})")])
        return out

    def student_jobs(self) -> list[Job]:
        """The students' jobs that can run now (a chain's later links wait for its earlier ones)."""
        return ready([j for _, jobs in self.student_chains().values() for j in jobs])

    def evaluations(self, corpora: dict, students: dict) -> list[tuple[str, Callable[[], tuple]]]:
        """Every measurement as (results field(s), what computes it), in report order."""
        e, lab, todo = self.cfg.eval, self.lab, []
        if e.quality:
            todo.append(("quality teacher_items", lambda: measures.quality(lab, corpora)))
        if e.detectability and self.detectable:
            todo.append(("detectability roc", lambda: measures.detectability(lab, corpora)))
        if e.lengths and self.detectable:
            todo.append(("lengths", lambda: (measures.lengths(lab, corpora),)))
        # A student with another tokenizer predicts other token ids: the auditor cannot read our texts
        # through it (reading mode); its generations are read back in the teacher's tokens.
        cross = bool(e.audit and self.detectable) and not work.shares_tokenizer(self.cfg.student_model,
                                                                                lab.teacher()[1], lab.cache_dir)
        modes = [m for m in e.audit_modes if not (cross and m == "reading")]
        if cross and "reading" in e.audit_modes:
            lab.log.add("evaluations", "reading-mode audits skipped: the students' tokenizer is not the teacher's",
                        "skipped", 0.0)
        if cross and by_stage(lab.attacks, "decode"):
            lab.log.add("evaluations", "audits skipped: a decode attack on a student with another tokenizer",
                        "skipped", 0.0)
            modes = []
        if e.audit and self.detectable:
            for p in self.detectable:
                for mode in modes:
                    for label, spec in ((p.spec, p.spec), ("raw", "none")):
                        for sd in lab.seeds.training:
                            todo.append(("audit audit_curves", lambda p=p, label=label, spec=spec, mode=mode, sd=sd:
                                         measures.audit(lab, p, label, students[(spec, sd)], mode, sd, cross)))
        if e.transfer:
            labels = [("base", None)] + [("raw" if s == "none" else s, s) for s in lab.protections]
            for label, spec in labels:
                for sd in lab.seeds.training:
                    todo.append(("items", lambda label=label, spec=spec, sd=sd: (
                        measures.grades(lab, label, students[(spec, sd)] if spec else None, sd),)))
        return todo

    # ------------------------------------------------------------ the whole run
    def run(self) -> dict:
        check_out_dir(self.out)  # an --out that is a file, before any stage starts
        with output_lock(self.out, "results folder"), library_chatter(self.lab.verbose):
            return self._run()

    def _stage(self, k: int, name: str, total: float = 1):
        return self.stages.stage(name, total, desc=f"[{k}/5] {name}")

    def _run(self) -> dict:
        t_start, lab, workers = time.perf_counter(), self.lab, self.cfg.students.workers
        fresh = not work.teacher_cached(self.cfg.teacher, lab.cache_dir, self.cfg.task)
        if fresh and not self.quiet:  # its training bar comes before this stage's
            print(f"[1/5] teacher: training {lab.teacher_id} (first use, then cached)", file=sys.stderr)
        with self._stage(1, "teacher") as bar, torch_threads(threads_per_process(1, self.cfg.threads)) as n:
            t0 = time.perf_counter()
            lab.teacher()
            self.log.add("teacher", lab.teacher_id, "computed" if fresh else "cached", time.perf_counter() - t0,
                         threads=n if fresh else None)
            self.stage_threads["teacher"] = n
            bar.update(1)
        jobs = self.corpus_jobs()
        with self._stage(2, "corpora", sum(j.cost for j in jobs)) as bar:
            Scheduler(workers, self.log, verbose=lab.verbose, threads=self.cfg.threads).run(jobs, bar)
        with self._stage(3, "students", 0) as bar:
            run_rounds(self.student_jobs, lab, workers, bar)
        corpora = {p.spec: lab.corpus(p) for p in lab.protections.values()}
        students = {k: path for k, (path, _) in self.student_chains().items()}
        res = self.measure(corpora, students)
        card = measures.teacher_card(lab)  # a named teacher graded on the students' test items (cached)
        # up to the report, which takes seconds
        meta_ = {**meta(lab, self.stages, time.perf_counter() - t_start, card), "stage_threads": self.stage_threads}
        with self._stage(5, "report") as bar:
            write_report(self.out, public_config(self.cfg, lab.key, lab.key_source), res, meta_)
            bar.update(1)
        meta_["stage_seconds"], meta_["stage_cpu_seconds"] = self.stages.seconds, self.stages.cpu_seconds
        return {"results": res, "log": self.log, "meta": meta_, "out": self.out}

    def measure(self, corpora: dict, students: dict) -> RunResults:
        """Stage 4: every evaluation, then capability transfer and the frontier from the grades."""
        todo, tables, e, lab = self.evaluations(corpora, students), {}, self.cfg.eval, self.lab
        threads = threads_per_process(1, self.cfg.threads)
        self.stage_threads["evaluations"] = threads
        with self._stage(4, "evaluations", len(todo)) as bar, torch_threads(threads):
            for fields, fn in todo:
                bar.set_postfix_str(fields.split()[0])
                for name, table in zip(fields.split(), fn()):
                    tables.setdefault(name, []).append(table)
                bar.update(1)
            res = RunResults(lab.sweeps, **{k: pd.concat(v, ignore_index=True) if k in CONCAT else v[0]
                                            for k, v in tables.items()})
            if e.transfer:
                res.transfer = capability_transfer(res.items, base="base", raw="raw", n_boot=e.n_boot, seed=lab.seed)
            if e.quality and e.transfer:
                by_spec = res.items.assign(student=res.items["student"].replace({"raw": "none"}))
                res.frontier = frontier(res.teacher_items, by_spec, lab.sweeps, n_boot=e.n_boot,
                                        none_on_curve=self.cfg.corpus.temperature == 1.0, seed=lab.seed)
        return res


def run_experiment(config: RunConfig, out, cache_dir=None, quiet: bool = False, verbose: bool = False) -> dict:
    return Runner(config, Path(out), cache_dir=cache_dir, quiet=quiet, verbose=verbose).run()
