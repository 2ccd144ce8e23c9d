"""The long work of an experiment as job functions, and the one place each `students/` entry point
is called from `eval/experiment/` (teacher, models, corpus generation, training, attacks).

Job functions are module-level and take one picklable argument, so the scheduler can run them in
this process or in a spawned worker (`eval.core.jobs`). Folders that are built all at once (attacked
and mixed corpora) are written through `build_once`, so a killed build leaves nothing that looks done.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from antidistill.students.attacks import (apply_corpus_attack, apply_student_attack, attack_corpus_folder,
                                          clean_records, decoding_settings, parse_attack, write_corpus)
from antidistill.students.attacks.reweight import effective_size
from antidistill.students.cache import build_once
from antidistill.students.protect.generate import generate_corpus
from antidistill.students.corpus import read_corpus, read_manifest
from antidistill.students.training.distill import MANIFEST_FILE, mix_records, train_student
from antidistill.students.models.loader import load_model, load_tokenizer
from antidistill.students.models.teacher import demo_teacher, teacher_dir
from antidistill.students.models.tokenizer import tokenizer_fingerprint
from antidistill.watermark import Key, parse_protection
from antidistill.watermark.errors import UserError

from ..core.jobs import library_chatter
from .config import TeacherSection

_TEACHERS: dict = {}  # (teacher, cache) -> (model, tokenizer): loaded once per process
_CLEAN: dict = {}  # (teacher, cache, n, seed) -> the attacker's clean records, drawn once per process


def _teacher_key(section: TeacherSection, cache_dir, task: str) -> tuple:
    return section.model, json.dumps(section.demo, sort_keys=True), str(cache_dir), task


def teacher_cached(section: TeacherSection, cache_dir, task: str = "demo") -> bool:
    """Whether loading the teacher finds it (a demo teacher is trained on first use)."""
    return section.model != "demo" or teacher_dir(section.recipe(task), cache_dir).is_dir()


def load_teacher(section: TeacherSection, cache_dir, progress: bool = False, task: str = "demo"):
    """The teacher (model, tokenizer): the demo teacher (trained on `task` on first use), or a named model."""
    key = _teacher_key(section, cache_dir, task)
    if key not in _TEACHERS:
        if section.model == "demo":
            _TEACHERS[key] = demo_teacher(cache_dir, config=section.recipe(task), progress=progress)
        else:
            _TEACHERS[key] = load_model(section.model, cache_dir=cache_dir)
    return _TEACHERS[key]


def teacher_card(section: TeacherSection, cache_dir, task: str = "demo") -> dict:
    if section.model != "demo":
        return {}
    return json.loads((teacher_dir(section.recipe(task), cache_dir) / "teacher_card.json").read_text())


def shares_tokenizer(student: str, teacher_tokenizer, cache_dir) -> bool:
    """Whether a student model name encodes text as the teacher does (its token ids are the teacher's)."""
    return tokenizer_fingerprint(load_tokenizer(student, cache_dir=cache_dir)) == tokenizer_fingerprint(teacher_tokenizer)


def load_student(preset: str, student_dir: Path | None, seed: int, cache_dir):
    """A student (model, tokenizer): `preset` before any distillation when `student_dir` is None."""
    if student_dir is None:
        return load_model(preset, seed=seed, cache_dir=cache_dir)
    return load_model(str(student_dir / "model"), cache_dir=cache_dir)


def clean(section: TeacherSection, cache_dir, n: int, seed: int, task: str = "demo") -> list[dict]:
    """The attacker's clean records: n reference traces of `task` drawn with `seed`, encoded by the
    teacher's tokenizer."""
    key = (*_teacher_key(section, cache_dir, task), n, seed)
    if key not in _CLEAN:
        _CLEAN[key] = clean_records(n, load_teacher(section, cache_dir, task=task)[1], seed=seed, task=task)
    return _CLEAN[key]


def write_clean(records: list[dict], out: Path, tok) -> None:
    """Clean records saved as a corpus folder, its manifest naming the tokenizer that encoded them."""
    source = {"teacher": "task-suite", "protection": "none", "tokenizer_fingerprint": tokenizer_fingerprint(tok),
              "vocab_size": len(tok)}
    write_corpus(records, out, source_manifest=source, attacks=[])


def suspect_decoding(spec: str, model, tok, *, prompts, reference, seed: int, max_new_tokens: int) -> dict:
    """A suspect's own decoding choices (a decode attack) as generation settings."""
    return decoding_settings(spec, model, tok, prompts=prompts, reference=reference, seed=seed,
                             max_new_tokens=max_new_tokens)


# ------------------------------------------------------------ what a job's folder being done means
def corpus_complete(target: Path) -> bool:
    try:
        return bool(read_manifest(target).get("complete", False))
    except UserError:
        return False


def student_complete(target: Path) -> bool:
    return (target / MANIFEST_FILE).is_file() and (target / "model" / "config.json").is_file()


def model_complete(target: Path) -> bool:
    return (target / "model" / "config.json").is_file()


def records(corpus: Path) -> int:
    return int(read_manifest(corpus)["counts"]["records"])


def corpus_attacks(corpus: Path) -> list[str]:
    return list(read_manifest(corpus).get("attacks", []))


# ------------------------------------------------------------ job functions
@dataclass(frozen=True)
class Generation:
    """A teacher corpus to generate (`generate`'s argument)."""

    teacher: TeacherSection
    teacher_name: str
    cache_dir: str | None
    target: Path
    protection: str
    key: Key
    n: int
    seed: int
    temperature: float
    max_new_tokens: int
    batch_size: int
    progress: bool
    task: str = "demo"


def generate(g: Generation) -> None:
    generate_corpus(load_teacher(g.teacher, g.cache_dir, task=g.task), g.target,
                    protection=parse_protection(g.protection), key=g.key, prompts=g.n, temperature=g.temperature,
                    max_new_tokens=g.max_new_tokens, seed=g.seed, batch_size=g.batch_size,
                    shard_size=max(g.batch_size, 256), progress=g.progress, teacher_name=g.teacher_name,
                    cache_dir=g.cache_dir, task=g.task)


def train(args: dict) -> None:
    """One student distilled: `args` are train_student's."""
    with library_chatter(args["progress"]):
        train_student(**args)


def finetune(args: dict) -> None:
    """One student attack (clean fine-tuning of a trained student)."""
    with library_chatter(False):
        apply_student_attack(args["spec"], args["student_dir"], args["out"], clean_corpus=args["clean_corpus"],
                             seed=args["seed"], cache_dir=args["cache_dir"])


@dataclass(frozen=True)
class CorpusEdit:
    """A corpus made from others in one go: one attack (`attack`), the run's chain of attacks
    (`chain`) or a mix (`mix`); `clean` = (n, seed) of the attacker's clean records."""

    teacher: TeacherSection
    cache_dir: str | None
    target: Path
    source: Path
    seed: int
    attacks: tuple[str, ...] = ()
    first_pass: Path | None = None
    clean: tuple[int, int] = (0, 0)
    marked: Path | None = None
    rho: float = 0.0
    task: str = "demo"


def attack(e: CorpusEdit) -> None:
    """`source` after one corpus attack (reweight's gradient from the first-pass student)."""
    a = parse_attack(e.attacks[0])

    def build(tmp: Path) -> None:
        src = read_corpus(e.source)
        student = load_model(str(e.first_pass / "model"), cache_dir=e.cache_dir) if e.first_pass else None
        recs = apply_corpus_attack(a, src.records, tokenizer=load_teacher(e.teacher, e.cache_dir, task=e.task)[1],
                                   clean=clean(e.teacher, e.cache_dir, *e.clean, task=e.task), student=student,
                                   seed=e.seed)
        write_corpus(recs, tmp, source_manifest=src.manifest, attacks=[a])

    build_once(e.target, build)


def attack_chain(e: CorpusEdit) -> None:
    """`source` after every corpus attack of a run config, in order."""
    first = e.first_pass
    build_once(e.target, lambda tmp: attack_corpus_folder(
        list(e.attacks), e.source, tmp, tokenizer=load_teacher(e.teacher, e.cache_dir, task=e.task)[1],
        clean=clean(e.teacher, e.cache_dir, *e.clean, task=e.task),
        student=lambda: load_student("", first, 0, e.cache_dir), seed=e.seed))


def mix(e: CorpusEdit) -> None:
    """A fraction rho of the records from `marked`, the rest from `source` (the raw corpus)."""
    def build(tmp: Path) -> None:
        raw, marked = read_corpus(e.source), read_corpus(e.marked)
        recs = mix_records(raw.records, marked.records, e.rho, e.seed)
        write_corpus(recs, tmp, source_manifest={**marked.manifest, "mix_rho": e.rho}, attacks=[])

    build_once(e.target, build)


def effective_records(corpus: Path, n: int) -> float:
    """How many equally weighted traces a corpus is worth: n, or Kish's effective size when its
    records carry reweighting weights."""
    if not any(a.startswith("reweight") for a in corpus_attacks(corpus)):
        return float(n)
    return effective_size([r.get("weight", 1.0) for r in read_corpus(corpus).records])
