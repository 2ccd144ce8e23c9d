"""What every planner and measure of a run shares (`Lab`), where each artifact lives, and the jobs
that make the long ones; `run_rounds` runs a planner's jobs until it has nothing left to ask for.

Every artifact lives in the store (`$ANTIDISTILL_CACHE/runs/<kind>/<hash>`), keyed by a hash of
exactly the inputs it depends on, so an unchanged config reruns nothing and a changed protection
recomputes only its own branch. The inputs dicts below are the cache keys: they never change shape.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from antidistill.students.attacks import by_stage, parse_attacks
from antidistill.students.cache import cache_root
from antidistill.students.tasks.registry import parse_task
from antidistill.watermark import Key, parse_protection, resolve_key

from ..core.jobs import Job, Scheduler
from ..core.store import Store
from . import work
from .config import DEMO_KEY_TEXT, RunConfig

RUNNER_VERSION = 2
LOCAL = "attacks"  # corpus edits run in this process: reweighting's gradients use its threads, as they always have


class Lab:
    """One run config made concrete: its key, seeds, parsed protections and attacks, the store its
    artifacts live in, and the teacher (loaded on first use). Owns the cache key of every corpus,
    student and fine-tune, and the `Job` that makes each; planners and measures read it, never write it."""

    def __init__(self, cfg: RunConfig, cache_dir=None, *, quiet: bool = False, verbose: bool = False):
        self.cfg = cfg
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.quiet, self.verbose = quiet, verbose and not quiet
        self.store = Store(cache_root(cache_dir) / "runs", RUNNER_VERSION)
        self.log = self.store.log
        self.seeds = cfg.seeds
        self.seed = cfg.seed
        self.sweeps = cfg.sweeps  # spec -> (family, swept parameter, value)
        self.protections = {spec: parse_protection(spec) for spec in self.sweeps}
        self.attacks = parse_attacks(list(cfg.attacks))
        self.key, self.key_source = resolve_key(text=cfg.key.text or None, config_file=cfg.key.file or None,
                                                default=Key.from_text(DEMO_KEY_TEXT))
        self.task = parse_task(cfg.task)
        self.teacher_id = cfg.teacher.id(cfg.task)
        self._made: set[Path] = set()  # small artifacts built or found in this run

    def teacher(self):
        return work.load_teacher(self.cfg.teacher, self.cache_dir, progress=not self.quiet, task=self.cfg.task)

    def teacher_card(self) -> dict:
        return work.teacher_card(self.cfg.teacher, self.cache_dir, self.cfg.task)

    def with_task(self, inputs: dict) -> dict:
        """A cache key with the run's task in it; the demo suite's keys predate tasks and stay as they were."""
        return inputs if self.task.family == "demo" else {**inputs, "task": self.task.key}

    # ------------------------------------------------------------ teacher corpora
    def corpus_inputs(self, prot, role: str) -> dict:
        """What a corpus is made from: role 'train' (the students') or 'audit' (the auditor's texts)."""
        c = self.cfg.corpus
        return self.with_task({"teacher": self.teacher_id, "protection": prot.spec, "role": role,
                               "n": c.n_prompts if role == "train" else self.cfg.eval.audit_texts,
                               "seed": self.seeds.corpus if role == "train" else self.seeds.audit_texts,
                               "key": self.key.fingerprint if prot.needs_key else None, "temperature": c.temperature,
                               "max_new_tokens": c.max_new_tokens})

    def corpus(self, prot, role: str = "train") -> Path:
        return self.store.path("corpora", self.corpus_inputs(prot, role))

    def corpus_job(self, prot, role: str) -> Job:
        i, c = self.corpus_inputs(prot, role), self.cfg.corpus
        target = self.corpus(prot, role)
        g = work.Generation(self.cfg.teacher, self.teacher_id, self.cache_dir, target, prot.spec, self.key, i["n"],
                            i["seed"], c.temperature, c.max_new_tokens, c.batch_size, self.verbose, self.cfg.task)
        return Job("corpora", f"{prot.spec} ({role})", target, work.generate, g, complete=work.corpus_complete)

    # ------------------------------------------------------------ students
    def student(self, corpus: Path, seed: int) -> Path:
        """The student distilled on `corpus` with training seed `seed` (init and data order)."""
        return self.store.path("students", {"corpus": corpus.name, "students": self.cfg.students.recipe(),
                                            "seed": seed})

    def student_job(self, corpus: Path, seed: int, item: str) -> Job:
        s, target = self.cfg.students, self.student(corpus, seed)
        args = dict(student=self.cfg.student_model, corpus=str(corpus), out=str(target), mode=s.mode, lora=s.lora or None,
                    epochs=s.epochs, max_steps=s.max_steps or None, lr=s.lr or None, batch_size=s.batch_size,
                    group_by_length=s.group_by_length, seed=seed, save_steps=10_000, progress=self.verbose,
                    logging_steps=100, cache_dir=self.cache_dir)
        return Job("students", item, target, work.train, args, after=(corpus,), complete=work.student_complete)

    def clean(self, n: int | None = None, seed: int | None = None) -> tuple[int, int]:
        """(n, seed) of the attacker's clean records (default: as many as the corpus has prompts)."""
        return (max(self.cfg.corpus.n_prompts, 64) if n is None else n,
                self.seeds.clean if seed is None else seed)

    def clean_corpus_inputs(self, n: int | None = None, seed: int | None = None, take: int | None = None) -> dict:
        n, seed = self.clean(n, seed)
        return self.with_task({"teacher": self.teacher_id, "n": n if take is None else take, "seed": seed})

    def clean_corpus(self, n: int | None = None, seed: int | None = None, take: int | None = None) -> Path:
        """The clean records (n, seed), or the first `take` of them, saved as a corpus folder."""
        n, seed = self.clean(n, seed)
        inputs = self.clean_corpus_inputs(n, seed, take)
        count = inputs["n"]
        if self.store.path("clean-corpora", inputs) in self._made:  # planners ask each round: log it once
            return self.store.path("clean-corpora", inputs)

        def build(tmp: Path) -> None:
            work.write_clean(work.clean(self.cfg.teacher, self.cache_dir, n, seed, self.cfg.task)[:count], tmp,
                             self.teacher()[1])

        path = self.store.build("students", f"clean corpus ({count})", "clean-corpora", inputs, build)
        self._made.add(path)
        return path

    # ------------------------------------------------------------ the run's own attacks
    def attacked_corpus(self, prot, seed: int) -> tuple[Path, Job | None]:
        """prot's training corpus after the config's corpus attacks, and the job that makes it (None:
        no corpus attack). Seeds share one attacked corpus, except under reweight, whose gradient is
        the seed's first-pass (unattacked) student's."""
        corpus = self.corpus(prot)
        if not by_stage(self.attacks, "corpus"):
            return corpus, None
        specs = tuple(a.spec for a in self.attacks)
        first = self.student(corpus, seed) if any(a.name == "reweight" for a in self.attacks) else None
        target = self.store.path("attacked-corpora", {"corpus": corpus.name, "attacks": list(specs),
                                                      "seed": self.seed, "first_pass": first.name if first else None})
        edit = work.CorpusEdit(self.cfg.teacher, self.cache_dir, target, corpus, self.seed, specs, first, self.clean(),
                               task=self.cfg.task)
        return target, Job(LOCAL, f"{prot.spec} corpus attacked", target, work.attack_chain, edit,
                           after=(corpus,) + ((first,) if first else ()))

    def student_attack_job(self, attack, prot, student: Path, seed: int) -> Job:
        """`student` after one student attack (clean fine-tuning)."""
        clean = self.clean_corpus()
        target = self.store.path("students", {"attack": attack.spec, "of": student.name, "clean": clean.name,
                                              "seed": seed})
        args = dict(spec=attack.spec, student_dir=str(student), out=str(target), clean_corpus=str(clean), seed=seed,
                    cache_dir=self.cache_dir)
        return Job("students", f"{attack.spec} of {prot.spec} (seed {seed})", target, work.finetune, args,
                   after=(student,), complete=work.model_complete)

    def attacked_student_jobs(self, prot, seed: int) -> tuple[Path, list[Job]]:
        """The chain that makes prot's attacked student of seed `seed`: first pass (reweight), attacked
        corpus, its student, then each student attack in order; the final folder and every job."""
        corpus, edit = self.attacked_corpus(prot, seed)
        jobs = [] if edit is None else [self.student_job(self.corpus(prot), seed, f"{prot.spec} (seed {seed})")
                                        for _ in edit.after[1:]] + [edit]
        jobs.append(self.student_job(corpus, seed, f"{prot.spec} (seed {seed})"))
        for a in by_stage(self.attacks, "student"):
            jobs.append(self.student_attack_job(a, prot, jobs[-1].target, seed))
        return jobs[-1].target, jobs


def ready(jobs: list[Job]) -> list[Job]:
    """The jobs whose inputs are all complete (a planner asks only for what it can make now)."""
    done = {j.target: j.complete(j.target) for j in jobs}
    return [j for j in jobs if all(done.get(p, p.is_dir()) for p in j.after)]


def run_rounds(planner: Callable[[], list[Job]], lab: Lab, workers: int, bar=None) -> None:
    """Call `planner` until it asks for nothing new; each call's corpus edits run first, in this
    process (their students then become visible to the next call), else its trainings `workers` at
    a time. The bar's total grows by each round's costs."""
    seen: set[Path] = set()
    while True:
        jobs = [j for j in planner() if j.target not in seen]
        if not jobs:
            return
        local = [j for j in jobs if j.stage == LOCAL]
        batch = local or jobs
        if bar is not None:
            bar.total = (bar.total or 0) + sum(j.cost for j in batch)
            bar.refresh()
        Scheduler(1 if local else workers, lab.log, verbose=lab.verbose, threads=lab.cfg.threads).run(batch, bar)
        seen.update(j.target for j in batch)
