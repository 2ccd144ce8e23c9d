"""`natural[:gsm=F]`: natural-language prompts, the prompt set of the former `antidistill natural`.

The 300 shipped instruction prompts (`prompts.instructions()`: explain, summarize, list, rewrite, ...;
open-ended, no reference answer) mixed with gsm_symbolic word problems (reasoning-gym; graded). F in
[0, 1] (default 0.25) is the share of gsm problems in a `distill` or `train` draw: a draw of n holds
round(F*n) gsm problems and n - round(F*n) instructions.

Splits:
  - distill  instructions and gsm problems. The instructions are too few to hash into three splits,
             so every instruction belongs to `distill`, none to `test`.
  - train    the same instruction pool as distill (a teacher is never trained on this task: the
             instructions have nothing to learn against) and gsm problems of gym's train split.
  - test     gsm problems only (the graded part). With F = 0 there is nothing to grade: asking for
             test examples is an error (set eval.transfer = false).
gsm problems are `GymTask("gsm_symbolic", {})`'s, with its prompt (question + one line asking for
`Answer: <answer>`; one code path, not the former command's own wording), its ids, its split
hashing (no test problem is ever in a distill or train draw) and its grader.

Interleaving: position i (0-based) of a draw holds a gsm problem when round(F*(i+1)) > round(F*i),
an instruction otherwise: gsm problems are spread evenly, the first m positions of any draw hold
exactly round(F*m) of them, and the layout does not depend on n or the seed. Instructions come in an
order permuted by the seed (`random.Random("antidistill/natural/<seed>")`), unique within a draw
(more than 300 is an error) unless unique=False, which cycles that order; gsm problems come in
GymTask's seeded order. So a draw is deterministic in (split, n, seed), and a larger n extends a
smaller one (same seed and `unique`).

Instructions are ungraded: `graded()` is False for them (answer and reference completion are empty,
skill is `instruction`) and `score` refuses them. No trace feature applies (an instruction has no
final answer to keep).
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from functools import cached_property
from importlib import resources

from antidistill.watermark.errors import UserError

from .base import Task, parse_params
from .suite import Example

DEFAULT_GSM = 0.25
SKILL = "instruction"
DATA_FILE = "instructions.jsonl"  # written by `python -m antidistill.students.tasks.prompts`


def instructions(n: int | None = None) -> list[dict]:
    """The shipped instruction set (first n)."""
    text = resources.files("antidistill.students").joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    if n is not None and not 0 < n <= len(rows):
        raise UserError(f"the instruction set has {len(rows)} prompts; asked for {n}")
    return rows[:n]


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise UserError(f"task natural: gsm={text} is not a share in [0, 1] (e.g. natural:gsm=0.25)")
    return value


def _is_gsm(share: float, i: int) -> bool:
    """Whether position i of a draw holds a gsm problem (the positions < m hold round(share*m))."""
    return round(share * (i + 1)) > round(share * i)


class NaturalTask(Task):
    family = "natural"

    def __init__(self, gsm: float = DEFAULT_GSM):
        self.gsm = float(gsm)
        text = f"{self.gsm:g}" if float(f"{self.gsm:g}") == self.gsm else repr(self.gsm)  # :g, unless it rounds
        self.spec = "natural" if self.gsm == DEFAULT_GSM else f"natural:gsm={text}"
        if self.gsm > 0:
            self._gym  # reasoning-gym missing: one line, at parse time

    @classmethod
    def parse(cls, body: str) -> NaturalTask:
        params = parse_params(body, "natural")
        unknown = sorted(set(params) - {"gsm"})
        if unknown:
            raise UserError(f"task natural: unknown parameter(s) {', '.join(unknown)}; valid: gsm")
        return cls(_share(params["gsm"]) if "gsm" in params else DEFAULT_GSM)

    @cached_property
    def _gym(self):
        from .gym import GymTask  # reasoning-gym is an optional extra: imported only when F > 0

        return GymTask("gsm_symbolic", {})

    @cached_property
    def _instructions(self) -> list[dict]:
        return instructions()

    @cached_property
    def key(self) -> str:  # read once: cache keys ask for it per artifact
        data = resources.files("antidistill.students").joinpath("data", DATA_FILE).read_bytes()
        key = f"{self.spec}@instructions={hashlib.sha256(data).hexdigest()[:16]}"
        return f"{key},{self._gym.key}" if self.gsm > 0 else key

    def examples(self, split, n, seed=0, unique=True):
        self.check_split(split, n)
        if split == "test":
            if n and self.gsm == 0:
                raise UserError(f"task {self.spec}: its test split is empty (instructions are ungraded, gsm=0): "
                                "nothing to grade; set eval.transfer = false or use gsm > 0")
            return self._gym.examples("test", n, seed, unique) if n else []
        n_gsm = round(self.gsm * n)  # the _is_gsm positions below n, summed
        pool = self._instructions
        if unique and n - n_gsm > len(pool):
            raise UserError(f"task {self.spec}: a draw of {n} needs {n - n_gsm} unique instructions; "
                            f"the instruction set has {len(pool)}")
        order = list(range(len(pool)))
        random.Random(f"antidistill/natural/{seed}").shuffle(order)
        gsm = iter(self._gym.examples(split, n_gsm, seed, unique) if n_gsm else [])
        out, k = [], 0
        for i in range(n):
            if _is_gsm(self.gsm, i):
                out.append(next(gsm))
                continue
            row = pool[order[k % len(order)]]
            k += 1
            out.append(Example(id=row["id"], skill=SKILL, split=split, prompt=row["prompt"], completion="",
                               answer="", problem=f"natural:{row['prompt']}"))
        return out

    def graded(self, example) -> bool:
        answer = example["answer"] if isinstance(example, dict) else example.answer
        return answer != ""  # an instruction's: nothing to grade against

    def score(self, example, completion):
        if not self.graded(example):
            ident = example["id"] if isinstance(example, dict) else example.id
            raise UserError(f"task {self.spec}: {ident!r} is an instruction, ungraded (no reference answer)")
        if self.gsm == 0:
            raise UserError(f"task {self.spec}: holds no graded examples (gsm=0)")
        return self._gym.score(example, completion)

    def supports(self, feature):
        return f"task {self.spec} mixes in open-ended instructions with no final answer for {feature} to read"
