"""`gym:NAME[,param=value...]`: any reasoning-gym dataset as a task (the `gym` extra).

reasoning-gym generates unlimited unique problems per dataset from a seed, with a verifier
(`score_answer`) and difficulty knobs (the dataset's config fields, passed as parameters:
`gym:chain_sum,min_terms=2,max_terms=3`). Splits are made the demo suite's way: each problem's
question text is hashed into train / distill / test (60 / 30 / 10%), and a split's stream keeps
only the problems hashed to it, so no test problem is ever in a distillation corpus, whatever the
seeds and counts. The stream draws reasoning-gym chunks with seeds derived from (seed, split, chunk).

Prompts are the question and one line asking for the answer as `Answer: <answer>` (the format the
`trace` countermeasure keeps); completions are graded by the dataset's own `score_answer` on the
answer read by `answers.extract_answer` (tags, boxed, ####, Answer: line; else the last number for a
number answer, the last line for any other).
The reference completion of an example is `Answer: X` (gym datasets ship no traces).
"""
from __future__ import annotations

import hashlib
import math
import re

from antidistill.watermark.errors import UserError

from .answers import extract_answer
from .base import Task, checked_score, parse_params
from .suite import ANSWER_MARK, Example, split_of

INSTALL = 'pip install -e ".[gym]"'
INSTRUCTION = "Give the final answer on the last line as 'Answer: <answer>'."
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_CHUNK = 512
_MAX_MISSES = 20_000  # drawn problems in a row that add nothing: the space is used up at this difficulty


def _gym():
    try:
        import reasoning_gym
    except ImportError:
        raise UserError(f"gym tasks need the reasoning-gym package; install it with: {INSTALL}") from None
    return reasoning_gym


def _value(text: str):
    """A parameter as reasoning-gym's config expects it: bool, int, float or string."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            v = kind(text)
        except ValueError:
            continue
        if kind is float and not math.isfinite(v):
            break
        return v
    return text


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:4], "little")


class GymTask(Task):
    family = "gym"

    def __init__(self, name: str, params: dict):
        self.name, self.params = name, dict(sorted(params.items()))
        self.spec = "gym:" + ",".join([name] + [f"{k}={v}" for k, v in self.params.items()])
        self._streams: dict[tuple[str, int, bool], list] = {}
        self._iters: dict[tuple[str, int, bool], object] = {}
        self._dataset(1, 0)  # a bad name or parameter fails here, at parse time, in one line

    @classmethod
    def parse(cls, body: str) -> GymTask:
        name, _, rest = body.partition(",")
        name = name.strip()
        gym = _gym()
        from reasoning_gym.factory import DATASETS

        if not name:
            raise UserError("task gym: give a dataset name, e.g. gym:chain_sum")
        if name not in DATASETS:
            close = [d for d in sorted(DATASETS) if name.split("_")[0] in d][:8]
            raise UserError(f"task gym:{name}: unknown reasoning-gym dataset"
                            + (f" (similar: {', '.join(close)})" if close else "")
                            + f"; {len(DATASETS)} datasets, listed by reasoning_gym.factory.DATASETS")
        del gym
        return cls(name, {k: _value(v) for k, v in parse_params(rest, f"gym:{name}").items()})

    @property
    def key(self) -> str:  # another reasoning-gym release may generate other problems from the same seed
        from importlib.metadata import version

        return f"{self.spec}@reasoning-gym={version('reasoning-gym')}"

    def _dataset(self, size: int, seed: int):
        try:
            return _gym().create_dataset(self.name, size=size, seed=seed, **self.params)
        except (TypeError, ValueError, AssertionError, KeyError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise UserError(f"task {self.spec}: reasoning-gym refused its parameters ({first})") from None

    def _draw(self, split: str, seed: int, unique: bool):
        """The split's problems in order: (Example, reasoning-gym entry), unique by question unless
        `unique` is off (training sets larger than the split's problem space: a problem may recur)."""
        seen: set[str] = set()
        chunk = misses = count = 0
        while True:
            data = self._dataset(_CHUNK, _seed("antidistill/gym", self.spec, seed, split, chunk))
            chunk += 1
            for entry in data:
                question = str(entry["question"])
                # The split is the question's, whatever the difficulty setting it was drawn at.
                if split_of(f"gym:{self.name}", question) != split or (unique and question in seen):
                    misses += 1
                    if misses > _MAX_MISSES:
                        raise UserError(f"task {self.spec}: cannot draw more unique problems for split {split!r}; "
                                        "ask for fewer examples or raise the difficulty")
                    continue
                misses = 0
                seen.add(question)
                answer = str(entry["answer"])
                skill = str(entry.get("metadata", {}).get("source_dataset", self.name))
                yield Example(id=f"{self.name}-{split}-{'s' if unique else 'r'}{seed}-{count:06d}", skill=skill, split=split,
                              prompt=f"{question}\n{INSTRUCTION}\n", completion=f"{ANSWER_MARK} {answer}",
                              answer=answer, problem=f"{self.spec}:{question}"), entry
                count += 1

    def _take(self, split: str, seed: int, n: int, unique: bool = True) -> list:
        key = (split, seed, unique)
        stream = self._streams.setdefault(key, [])
        if len(stream) < n:
            it = self._iters.setdefault(key, self._draw(split, seed, unique))
            while len(stream) < n:
                stream.append(next(it))
        return stream[:n]

    def examples(self, split, n, seed=0, unique=True):
        self.check_split(split, n)
        return [ex for ex, _ in self._take(split, seed, n, unique)]

    def _entry(self, example) -> dict:
        ident = example["id"] if isinstance(example, dict) else example.id
        name, split, seed, index = ident.rsplit("-", 3) if ident.count("-") >= 3 else ("", "", "", "")
        if name != self.name or seed[:1] not in ("s", "r") or not seed[1:].isdigit() or not index.isdigit():
            raise UserError(f"task {self.spec}: {ident!r} is not one of its example ids")
        return self._take(split, int(seed[1:]), int(index) + 1, seed[0] == "s")[int(index)][1]

    def score(self, example, completion):
        entry = self._entry(example)
        # Without an explicit answer marker, a number answer is read as the completion's last number (as the
        # jsonl numeric grader does), anything else as its last line: a small instruct model that ignores the
        # format ("2 + 3 equals 5.") is graded on what it answered, with one reading, never several guesses.
        numeric = _PLAIN_NUMBER.fullmatch(str(entry["answer"]).strip()) is not None
        answer, _ = extract_answer(completion, fallback="number" if numeric else "line")
        if answer is None:
            return 0.0
        data = _gym().get_score_answer_fn(entry["metadata"]["source_dataset"]) \
            if "source_dataset" in entry.get("metadata", {}) else None
        scorer = data or self._dataset(1, 0).score_answer
        return checked_score(scorer(answer=answer, entry=entry), self.spec)
