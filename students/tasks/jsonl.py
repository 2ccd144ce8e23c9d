"""`jsonl:path=FILE[,grader=numeric|exact|choice|regex,pattern=REGEX]`: a user's own benchmark.

One JSON object a line: `prompt` and `answer` (strings; a number answer is taken as its text),
optional `id` (unique; default: the line number), `split` (train, distill or test) and `skill` (a
category the tables break accuracy down by). Rows without a split are assigned one by a hash of
their prompt (60 / 30 / 10%, as the demo suite's problems are): the assignment never depends on the
order or the size of the file, and two rows asking the same thing land in the same split. A split's
examples come in a seeded order that does not depend on the file's order either: a larger count
extends a smaller one, and two seeds draw the same problems in different orders.

Graders read the completion's final answer (`answers.extract_answer`: think block removed, then
`<answer>` tags, `\\boxed{}`, `####`, `Answer:`) and compare it with the row's answer:
  - numeric  the numbers are equal (relative tolerance 1e-6); falls back to the last number
  - exact    the texts are equal, whitespace collapsed, trailing period and quotes dropped; falls
             back to the last line
  - choice   the option letters (A-J) are equal
  - regex    `pattern` (a Python regex with one group) finds the answer in the completion; its last
             match's group must equal the row's answer exactly. `pattern=` comes last in the spec and
             takes the rest of it, commas included: `jsonl:path=f.jsonl,grader=regex,pattern=(\\d{1,3})`
"""
from __future__ import annotations

import hashlib
import math
import random
import re
from pathlib import Path

from antidistill.watermark.errors import UserError, check_text, read_json_objects

from .answers import extract_answer, normalise, numbers_equal, parse_choice, parse_number
from .base import Task, parse_params
from .suite import ANSWER_MARK, SPLITS, Example, split_of

GRADERS = ("numeric", "exact", "choice", "regex")


class JsonlTask(Task):
    family = "jsonl"

    def __init__(self, path: Path, grader: str = "numeric", pattern: str | None = None):
        self.path, self.grader = path, grader
        self.pattern = re.compile(pattern) if pattern is not None else None
        self.rows = self._read(path)
        # The file's content, not its path, names the task in cache keys: an edited file is a new task.
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        extra = f",pattern={pattern}" if pattern is not None else ""
        self.spec = f"jsonl:path={path},grader={grader}{extra}"
        self._key = f"jsonl:sha256={digest},grader={grader}{extra}"
        self._ids = {r["id"]: r for rows in self.rows.values() for r in rows}

    @property
    def key(self) -> str:
        return self._key

    @classmethod
    def parse(cls, body: str) -> JsonlTask:
        head, sep, pattern_text = body.partition("pattern=")
        if sep and head and not head.endswith(","):  # "xpattern=" inside another value
            head, sep, pattern_text = body, "", ""
        params = parse_params(head, "jsonl")
        if sep:
            if "pattern" in params:
                raise UserError("task jsonl: parameter 'pattern' given twice")
            params["pattern"] = pattern_text
        unknown = sorted(set(params) - {"path", "grader", "pattern"})
        if unknown:
            raise UserError(f"task jsonl: unknown parameter(s) {', '.join(unknown)}; valid: path, grader, pattern")
        if "path" not in params:
            raise UserError("task jsonl: give the file, e.g. jsonl:path=problems.jsonl")
        grader = params.get("grader", "numeric")
        if grader not in GRADERS:
            raise UserError(f"task jsonl: unknown grader {grader!r}; valid graders: {', '.join(GRADERS)}")
        pattern = params.get("pattern")
        if (grader == "regex") != (pattern is not None):
            raise UserError("task jsonl: grader=regex needs pattern=REGEX, and pattern= needs grader=regex")
        if pattern is not None:
            try:
                if re.compile(pattern).groups != 1:
                    raise UserError(f"task jsonl: pattern {pattern!r} must have exactly one (group): the answer")
            except re.error as err:
                raise UserError(f"task jsonl: pattern {pattern!r} is not a regular expression ({err})") from None
        return cls(Path(params["path"]).expanduser().resolve(), grader, pattern)

    @staticmethod
    def _read(path: Path) -> dict[str, list[dict]]:
        if not path.is_file():
            raise UserError(f"task jsonl: {path} does not exist or is not a file")
        by_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
        seen: set[str] = set()
        for lineno, where, obj in read_json_objects(path, "task file"):
            if not isinstance(obj.get("prompt"), str) or not obj["prompt"].strip():
                raise UserError(f"{where}: needs a non-empty string \"prompt\"")
            answer = obj.get("answer")
            if isinstance(answer, bool) or not isinstance(answer, (str, int, float)) or not str(answer).strip() \
                    or (isinstance(answer, float) and not math.isfinite(answer)):
                raise UserError(f"{where}: needs an \"answer\" (a non-empty string or a finite number)")
            ident = str(obj.get("id", f"line{lineno}"))
            check_text(ident, where, "id")
            if ident in seen:
                raise UserError(f"{where}: id {ident!r} appears twice; ids must be unique")
            seen.add(ident)
            split = obj.get("split", split_of("jsonl", obj["prompt"]))
            if split not in SPLITS:
                raise UserError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
            skill = obj.get("skill", "all-items")
            if not isinstance(skill, str) or not skill or skill == "all":
                raise UserError(f"{where}: skill must be a non-empty string other than 'all'")
            prompt = check_text(obj["prompt"], where, "prompt")
            by_split[split].append({"id": ident, "prompt": prompt if prompt.endswith("\n") else prompt + "\n",
                                    "answer": str(answer).strip(), "skill": skill, "split": split})
        if not seen:
            raise UserError(f"task jsonl: {path} holds no rows")
        return by_split

    def examples(self, split, n, seed=0, unique=True):
        self.check_split(split, n)
        rows = sorted(self.rows[split], key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
        if n > len(rows) and unique:
            raise UserError(f"task {self.spec}: split {split!r} holds {len(rows)} rows; asked for {n}")
        rng = random.Random(f"antidistill/jsonl/{seed}/{split}")
        rng.shuffle(rows)
        if rows and n > len(rows):  # repeats allowed: the order is cycled
            rows = (rows * (n // len(rows) + 1))
        return [Example(id=r["id"], skill=r["skill"], split=split, prompt=r["prompt"],
                        completion=f"{ANSWER_MARK} {r['answer']}", answer=r["answer"], problem=r["id"])
                for r in rows[:n]]

    def score(self, example, completion):
        answer = example["answer"] if isinstance(example, dict) else example.answer
        if self.grader == "regex":
            found = self.pattern.findall(completion)
            return float(bool(found) and found[-1].strip() == answer)
        fallback = {"numeric": "number", "exact": "line", "choice": "line"}[self.grader]
        got, _ = extract_answer(completion, fallback=fallback)
        if self.grader == "numeric":
            return float(numbers_equal(parse_number(got), parse_number(answer)))
        if self.grader == "choice":
            return float(parse_choice(got) is not None and parse_choice(got) == parse_choice(answer))
        return float(normalise(got) is not None and normalise(got) == normalise(answer))
