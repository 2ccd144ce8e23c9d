"""What every task is (`Task`): splits, a grader with credit in [0, 1], and what its traces support.

The families live beside it (`demo.py`, `gym.py`, `jsonl.py`, `natural.py`) and `registry.parse_task` reads a spec.
"""
from __future__ import annotations

import math
from typing import ClassVar, Sequence

from antidistill.watermark.errors import UserError

from .answers import split_reasoning
from .suite import SPLITS, Example
from .traces import thin_trace

# What a trace-reading feature needs: the demo's step grammar, or only a final answer to keep.
FEATURES = ("trace:keep=answer", "trace:keep=results", "answer-only", "canonicalize", "recompute")


class Task:
    """One benchmark. Subclasses set `family`, build `spec` (canonical, part of cache keys) and
    implement `examples` and `score`."""

    family: ClassVar[str]
    spec: str  # canonical, as a user writes it

    @property
    def key(self) -> str:
        """What the task's problems depend on, for cache keys (a file task: its content, not its path)."""
        return self.spec

    def examples(self, split: str, n: int, seed: int = 0, unique: bool = True) -> list[Example]:
        """`n` examples of `split`, deterministic in (split, n, seed); a larger n extends a smaller one."""
        raise NotImplementedError

    def score(self, example: Example | dict, completion: str) -> float:
        """Credit in [0, 1] for a completion of `example` (an Example, or a corpus record with its
        `id`, `skill` and `answer`)."""
        raise NotImplementedError

    def graded(self, example: Example | dict) -> bool:
        """Whether the example has a reference answer to grade against."""
        return True

    def correct(self, example: Example | dict, completion: str) -> bool:
        return self.score(example, completion) >= 1.0

    def supports(self, feature: str) -> str | None:
        """None when the task supports a trace-reading feature, else why not (one clause)."""
        if feature in ("trace:keep=answer", "answer-only"):
            return None
        return (f"task {self.spec} has no step grammar ({feature} reads the demo suite's steps); "
                "only trace:keep=answer and answer-only apply to free-form traces")

    def thin(self, completion: str, skill: str, keep: str) -> tuple[str, float, bool]:
        """(what a user sees under trace:keep=`keep`, share of the reasoning's characters still shown,
        whether the answer was found). Free-form traces: a reasoning model's think block is removed;
        otherwise everything before the last `Answer:` line is."""
        if keep != "answer":
            raise UserError(self.supports(f"trace:keep={keep}"))
        reasoning, rest, found = split_reasoning(completion)
        if found:
            return rest, 0.0, bool(rest.strip())
        return thin_trace(completion, skill, "answer")

    def check_split(self, split: str, n: int) -> None:
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        if type(n) is not int or n < 0:
            raise UserError(f"number of examples must be an integer >= 0, got {n!r}")

    def __repr__(self) -> str:
        return f"Task({self.spec!r})"


def checked_score(value, spec: str) -> float:
    """A grader's credit as a float in [0, 1]; anything else is the grader's bug, said in one line."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise UserError(f"task {spec}: its grader returned {value!r}, not a score in [0, 1]")
    return v


def parse_params(body: str, where: str) -> dict[str, str]:
    """`a=1,b=x` -> {"a": "1", "b": "x"}; duplicate or malformed items are refused naming `where`."""
    out: dict[str, str] = {}
    for item in (p.strip() for p in body.split(",")):
        if not item:
            continue
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name or not value:
            raise UserError(f"task {where}: {item!r} is not name=value")
        if name in out:
            raise UserError(f"task {where}: parameter {name!r} given twice")
        out[name] = value
    return out


def accuracy_by_skill(task: Task, examples: Sequence[Example], completions: Sequence[str]) -> dict[str, float]:
    """Share of full-credit completions per skill, plus `all` (the mean over examples)."""
    if len(examples) != len(completions):
        raise ValueError(f"{len(examples)} examples but {len(completions)} completions")
    hits: dict[str, list[bool]] = {}
    for ex, comp in zip(examples, completions):
        hits.setdefault(ex.skill, []).append(task.correct(ex, comp))
    acc = {s: sum(v) / len(v) for s, v in sorted(hits.items())}
    total = [h for v in hits.values() for h in v]
    acc["all"] = sum(total) / len(total) if total else float("nan")
    return acc
