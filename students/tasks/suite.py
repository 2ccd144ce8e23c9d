"""The procedural task suite the demo teacher learns, distillers query, and graders check.

Four skills with verifiable answers (`add`, `mul`, `sort`, `count`). Every completion is a
step-by-step trace whose wording is drawn at random at each step from equivalent phrasings,
followed by one line `Answer: X`. The varied wording is where a watermark can live without
changing the answer; the trace is what a distiller wants to copy.

Splits are disjoint by construction: each *problem* (not its wording) is hashed into train /
distill / test, so no test problem is ever seen in training, however many examples are drawn.
Everything is seeded with string seeds, so the same call gives the same examples on any machine.
"""
from __future__ import annotations

import hashlib
import operator
import random
import re
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence

from antidistill.watermark.errors import UserError

SKILLS = ("add", "mul", "sort", "count")
SPLITS = ("train", "distill", "test")
# Share of the problem space (per mille) owned by each split, assigned by a hash of the problem. The
# distillation split owns 30% so that every skill supplies >= 20,000 unique distillation prompts.
_SPLIT_EDGES = {"train": (0, 600), "distill": (600, 900), "test": (900, 1000)}
ANSWER_MARK = "Answer:"
# The most held-out test problems a grading draws (2,500 per skill, all unique; drawn in about 10 s).
# Each is a greedy generation, so more would be hours of CPU for an interval already under +-1 point.
N_TEST_MAX = 10_000


@dataclass(frozen=True)
class TaskConfig:
    """Difficulty of the suite; part of the demo teacher's cache key."""

    add_digits: tuple[int, int] = (2, 3)
    # Up to 4-digit multiplicands: 2-3 digits gave only 792 distinct distillation problems.
    mul_digits: tuple[int, int] = (2, 4)
    sort_len: tuple[int, int] = (4, 6)
    sort_max: int = 9  # single digits: 2-digit sorting took a 2-layer teacher past its 5-minute budget
    count_len: tuple[int, int] = (5, 8)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Example:
    """One task-suite problem: its id, skill and split, the prompt, a varied reference trace and the
    answer, and the canonical problem that decides which split it belongs to."""

    id: str
    skill: str
    split: str
    prompt: str  # ends with a newline: the completion starts on the next line
    completion: str  # varied step-by-step trace, last line "Answer: X"
    answer: str
    problem: str = field(repr=False, default="")  # canonical problem, the unit of split membership

    @property
    def text(self) -> str:
        return self.prompt + self.completion


# ---------------------------------------------------------------- phrasing helpers

_PLACES = ("ones", "tens", "hundreds", "thousands")


def _pick(rng: random.Random, options: Sequence[str]) -> str:
    return options[rng.randrange(len(options))]


def _column(rng: random.Random, i: int) -> str:
    name = _PLACES[i]
    return _pick(rng, (f"{name.capitalize()}:", f"The {name} column:", f"In the {name}:",
                       f"{name.capitalize()} digit:", f"For the {name}:"))


# Choice points right after a digit: with a one-token watermark context (h = 1) each digit token
# (20: with and without a leading space) is its own context, so such a slot gives a watermark, and
# an auditor, many more distinct (context, token) tuples than a slot after fixed text. The skills
# draw from mostly different words here, so one digit context means different choices per skill.
def _link(rng: random.Random) -> str:
    return _pick(rng, (",", ";", " so", " then", " and", ":"))


def _write(rng: random.Random, digit: int, carry: int) -> str:
    w = _pick(rng, ("write", "put down", "keep", "record", "note", "mark"))
    if carry:
        c = _pick(rng, (f" and carry {carry}", f", carry {carry}", f" carrying {carry}", f"; carry {carry}"))
    else:
        c = _pick(rng, ("", " with no carry", ", carry 0", "; no carry"))
    return f"{w} {digit}{c}."


def _final_carry(rng: random.Random, carry: int) -> str:
    return _pick(rng, (f"Bring down the carry {carry}.", f"The final carry {carry} goes in front.",
                       f"Leftover carry: {carry}.", f"Then the carry {carry} leads.", f"Carry {carry} goes first."))


def _sort_end(rng: random.Random) -> str:
    return _pick(rng, (".", ";", "!", " now."))


def _count_mark(rng: random.Random) -> str:
    return _pick(rng, (":", " -", " ->", " ="))


def _count_end(rng: random.Random) -> str:
    return _pick(rng, (".", ";", "!", " in all."))


def _column_steps(rng: random.Random, columns, sign: str, combine) -> list[str]:
    """The lines of a column-by-column computation, ones column first: `columns` holds each
    column's (left, right) digits, `combine` their value before the incoming carry."""
    steps, carry = [], 0
    for i, (x, y) in enumerate(columns):
        s = combine(x, y) + carry
        plus = f" + {carry}" if carry else ""
        new = s // 10
        steps.append(f"{_column(rng, i)} {x} {sign} {y}{plus} = {s}{_link(rng)} {_write(rng, s % 10, new)}")
        carry = new
    if carry:
        steps.append(_final_carry(rng, carry))
    return steps


def _digits(rng: random.Random, lo_hi: tuple[int, int]) -> int:
    n = rng.randint(*lo_hi)
    return rng.randint(10 ** (n - 1), 10**n - 1)


# ---------------------------------------------------------------- the four skills
# Each skill has a sampler (rng, cfg) -> canonical problem tuple, and a renderer
# (problem, rng) -> (prompt, completion, answer). Renderers use their own rng for wording.


def _add_problem(rng, cfg):
    return (_digits(rng, cfg.add_digits), _digits(rng, cfg.add_digits))


def _add_render(p, rng):
    a, b = p
    prompt = _pick(rng, (f"Add {a} and {b}.", f"What is {a} + {b}?", f"Compute {a} plus {b}.",
                         f"Find the sum of {a} and {b}."))
    da, db = str(a)[::-1], str(b)[::-1]
    columns = [(int(da[i]) if i < len(da) else 0, int(db[i]) if i < len(db) else 0)
               for i in range(max(len(da), len(db)))]
    return prompt, _column_steps(rng, columns, "+", operator.add), str(a + b)


def _mul_problem(rng, cfg):
    return (_digits(rng, cfg.mul_digits), rng.randint(2, 9))


def _mul_render(p, rng):
    a, d = p
    prompt = _pick(rng, (f"Multiply {a} by {d}.", f"What is {a} x {d}?", f"Compute {a} times {d}.",
                         f"Find the product of {a} and {d}."))
    columns = [(d, int(ch)) for ch in str(a)[::-1]]
    return prompt, _column_steps(rng, columns, "x", operator.mul), str(a * d)


def _sort_problem(rng, cfg):
    n = rng.randint(*cfg.sort_len)
    return tuple(rng.randint(0, cfg.sort_max) for _ in range(n))


def _sort_render(p, rng):
    sep = _pick(rng, (", ", " "))
    xs = sep.join(map(str, p))
    prompt = _pick(rng, (f"Sort {xs} from smallest to largest.", f"Put {xs} in increasing order.",
                         f"Arrange in ascending order: {xs}.", f"Order these numbers: {xs}."))
    ys = sorted(p)
    steps = [_pick(rng, (f"The smallest is {ys[0]}", f"Smallest: {ys[0]}", f"First comes {ys[0]}",
                         f"Start with {ys[0]}")) + _sort_end(rng)]
    for j, y in enumerate(ys[1:], start=1):
        if j == len(ys) - 1:
            step = _pick(rng, (f"Finally {y}", f"Last is {y}", f"The largest is {y}", f"End with {y}"))
        else:
            step = _pick(rng, (f"Next is {y}", f"Then {y}", f"After that comes {y}", f"Next smallest: {y}",
                               f"Following: {y}"))
        steps.append(step + _sort_end(rng))
    return prompt, steps, " ".join(map(str, ys))


def _count_problem(rng, cfg):
    n = rng.randint(*cfg.count_len)
    t = rng.randint(0, 9)
    # Bias toward the target so counts are not almost always 0 or 1.
    xs = tuple(t if rng.random() < 0.3 else rng.randint(0, 9) for _ in range(n))
    return (t, xs)


def _count_render(p, rng):
    t, xs = p
    sep = _pick(rng, (", ", " "))
    lst = sep.join(map(str, xs))
    prompt = _pick(rng, (f"How many times does {t} appear in {lst}?", f"Count the {t}s in {lst}.",
                         f"In {lst}, how often is {t}?"))
    steps, c = [], 0
    for x in xs:
        if x == t:
            c += 1
            verdict = _pick(rng, ("yes", "match", f"that is a {t}", "hit"))
        else:
            verdict = _pick(rng, ("no", "skip", f"not a {t}", "miss"))
        tally = _pick(rng, (f"count {c}", f"so far {c}", f"total {c}", f"running {c}"))
        steps.append(f"{x}{_count_mark(rng)} {verdict}, {tally}{_count_end(rng)}")
    return prompt, steps, str(c)


_SKILLS: dict[str, tuple[Callable, Callable]] = {
    "add": (_add_problem, _add_render),
    "mul": (_mul_problem, _mul_render),
    "sort": (_sort_problem, _sort_render),
    "count": (_count_problem, _count_render),
}


# ---------------------------------------------------------------- splits and examples


def _problem_key(skill: str, problem) -> str:
    return f"{skill}:{problem!r}"


def split_of(skill: str, problem) -> str:
    """The split a problem belongs to: a fixed hash, independent of seeds and counts."""
    h = int.from_bytes(hashlib.sha256(_problem_key(skill, problem).encode()).digest()[:8], "little") % 1000
    for name, (lo, hi) in _SPLIT_EDGES.items():
        if lo <= h < hi:
            return name
    raise AssertionError(h)


def render(skill: str, problem, rng: random.Random) -> tuple[str, str, str]:
    """(prompt, completion, answer) of one problem, wording drawn from `rng`."""
    prompt, steps, answer = _SKILLS[skill][1](problem, rng)
    return prompt + "\n", "\n".join(steps) + f"\n{ANSWER_MARK} {answer}", answer


def make_split(split: str, n: int, seed: int = 0, skills: Iterable[str] = SKILLS,
               config: TaskConfig | None = None, unique: bool = True) -> list[Example]:
    """`n` examples of `split`, skills interleaved round-robin, problems unique within the split.

    Deterministic in (split, n, seed, skills, config); a larger `n` extends a smaller one per skill.
    `unique=False` lets a problem recur (with fresh wording) once a skill's share of the problem
    space is used up — for training sets larger than a small skill's space; splits stay disjoint.
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    skills = tuple(skills)
    bad = [s for s in skills if s not in _SKILLS]
    if bad or not skills:
        raise UserError(f"unknown skill(s) {', '.join(bad) or '(none given)'}; valid skills: {', '.join(SKILLS)}")
    if n < 0:
        raise UserError(f"number of examples must be >= 0, got {n}")
    cfg = config or TaskConfig()
    per_skill = {s: (n - i + len(skills) - 1) // len(skills) for i, s in enumerate(skills)}
    streams = {s: _skill_stream(s, split, seed, cfg, unique) for s in skills}
    lists = {s: [next(streams[s]) for _ in range(per_skill[s])] for s in skills}
    out = []
    for j in range(max(per_skill.values(), default=0)):
        out.extend(lists[s][j] for s in skills if j < len(lists[s]))
    return out


def _skill_stream(skill: str, split: str, seed: int, cfg: TaskConfig, unique: bool = True):
    sample, _ = _SKILLS[skill]
    prob_rng = random.Random(f"antidistill/tasks/{seed}/{skill}/{split}/problems")
    word_rng = random.Random(f"antidistill/tasks/{seed}/{skill}/{split}/wording")
    seen: set = set()
    misses = count = 0
    while True:
        problem = sample(prob_rng, cfg)
        if split_of(skill, problem) != split or (problem in seen and unique):
            misses += 1
            if misses > 200_000:  # the space is exhausted for this difficulty
                raise UserError(f"task suite: cannot draw more unique {skill!r} problems for split "
                                f"{split!r}; ask for fewer examples or raise the difficulty")
            continue
        misses = 0
        count += 1
        seen.add(problem)
        prompt, completion, answer = render(skill, problem, word_rng)
        yield Example(id=f"{skill}-{split}-{count - 1:06d}", skill=skill, split=split, prompt=prompt,
                      completion=completion, answer=answer, problem=_problem_key(skill, problem))


# ---------------------------------------------------------------- grading

_ANSWER_RE = re.compile(r"Answer:[ \t]*([^\n]*)")
_FORMATS = {"add": re.compile(r"\d+"), "mul": re.compile(r"\d+"), "count": re.compile(r"\d+"),
            "sort": re.compile(r"\d+( \d+)*")}


def parse_answer(completion: str, skill: str | None = None) -> str | None:
    """The final answer of a completion: the text after its last `Answer:`, whitespace normalised.

    None when there is no answer line, or (given `skill`) when it is not in that skill's format
    (e.g. a number with stray words, an empty answer).
    """
    found = _ANSWER_RE.findall(completion)
    if not found:
        return None
    answer = " ".join(found[-1].replace(",", " ").split())
    answer = answer.rstrip(".")
    if not answer:
        return None
    if skill is not None and not _FORMATS[skill].fullmatch(answer):
        return None
    if skill in ("add", "mul", "count"):
        answer = str(int(answer))  # "007" and "7" are the same number
    return answer


def grade(example: Example, completion: str) -> bool:
    """Exact match of the parsed final answer with the example's answer."""
    return parse_answer(completion, example.skill) == example.answer


def corpus_text(n: int = 4000, seed: int = 0, config: TaskConfig | None = None) -> list[str]:
    """Text of training examples, e.g. to train the project tokenizer on."""
    return [ex.text for ex in make_split("train", n, seed=seed, config=config)]
