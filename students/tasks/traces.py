"""Reading the task suite's own text back, and rendering its traces for the `trace` countermeasure.

One parser of trace steps (`parse_steps`) serves both sides:
- the attacker who collected demo traces can recompute the answer of every prompt (`parse_prompt`,
  `solve`) and rewrite every trace into one canonical phrasing per step (`canonical_trace`): the
  numbers a step writes (digits, sums, carries, running counts, the sorted element) are kept as the
  trace wrote them, right or wrong; only the words chosen at each choice point are replaced. Lines
  that do not parse as a step are kept verbatim, so nothing the teacher wrote is dropped.
- the `trace` countermeasure (`thin_trace`, `TraceRenderer`): `keep=answer` leaves the final
  `Answer:` line; `keep=results` leaves each step's result but not its working: a column step
  "Tens: 4 + 7 + 1 = 12, write 2 and carry 1." becomes "Tens: 12, write 2 and carry 1." (the
  operands are the working), a counting step "7: yes, count 2." becomes "count 2." (the comparison
  is the working); a sorting step already is a result and a final carry line is one. A line of no
  known step form is withheld (the user sees less, never more). The share of the reasoning still
  shown is measured in characters.
"""
from __future__ import annotations

import re

from antidistill.watermark.errors import UserError

from .answers import split_reasoning
from .suite import ANSWER_MARK, SKILLS

_PLACES = ("ones", "tens", "hundreds", "thousands")
_NUM_LIST = r"\d+(?:(?:, | )\d+)*"

# ---------------------------------------------------------------- prompts -> problems

_PROMPTS = {
    "add": [re.compile(p) for p in (r"Add (\d+) and (\d+)\.", r"What is (\d+) \+ (\d+)\?",
                                    r"Compute (\d+) plus (\d+)\.", r"Find the sum of (\d+) and (\d+)\.")],
    "mul": [re.compile(p) for p in (r"Multiply (\d+) by (\d+)\.", r"What is (\d+) x (\d+)\?",
                                    r"Compute (\d+) times (\d+)\.", r"Find the product of (\d+) and (\d+)\.")],
    "sort": [re.compile(p.format(L=_NUM_LIST)) for p in (
        r"Sort ({L}) from smallest to largest\.", r"Put ({L}) in increasing order\.",
        r"Arrange in ascending order: ({L})\.", r"Order these numbers: ({L})\.")],
    "count": [re.compile(p.format(L=_NUM_LIST)) for p in (
        r"How many times does (?P<t>\d) appear in (?P<xs>{L})\?", r"Count the (?P<t>\d)s in (?P<xs>{L})\.",
        r"In (?P<xs>{L}), how often is (?P<t>\d)\?")],
}


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text))


def parse_prompt(prompt: str) -> tuple[str, tuple] | None:
    """(skill, problem) of a task-suite prompt, the problem in the suite's canonical form; None if
    the prompt is not one of the suite's templates."""
    text = prompt.strip()
    for skill, patterns in _PROMPTS.items():
        for pat in patterns:
            m = pat.fullmatch(text)
            if m is None:
                continue
            if skill in ("add", "mul"):
                return skill, (int(m.group(1)), int(m.group(2)))
            if skill == "sort":
                return skill, _ints(m.group(1))
            return skill, (int(m.group("t")), _ints(m.group("xs")))
    return None


def solve(skill: str, problem) -> str:
    """The answer of a problem, written as the suite writes it (and `parse_answer` reads it)."""
    if skill == "add":
        return str(problem[0] + problem[1])
    if skill == "mul":
        return str(problem[0] * problem[1])
    if skill == "sort":
        return " ".join(map(str, sorted(problem)))
    if skill == "count":
        t, xs = problem
        return str(sum(x == t for x in xs))
    raise ValueError(f"unknown skill {skill!r}; valid skills: {', '.join(SKILLS)}")


def recompute_answer(prompt: str) -> str | None:
    """The true answer of a task-suite prompt, computed from the prompt alone (None: not parseable)."""
    parsed = parse_prompt(prompt)
    return solve(*parsed) if parsed else None


# ---------------------------------------------------------------- traces -> steps -> one phrasing

_COLUMN_STEP = re.compile(
    r"(?P<col>.*?)(?P<x>\d+) (?P<sign>[+x]) (?P<y>\d+)(?: \+ (?P<cin>\d+))? = (?P<s>\d+)"
    r"(?:,|;|:| so| then| and) (?:write|put down|keep|record|note|mark) (?P<d>\d+)(?P<rest>.*)")
_CARRY = re.compile(r"carry(?:ing)? (\d+)")
_FINAL_CARRY = re.compile(r"(?:Bring down the carry|The final carry|Leftover carry:|Then the carry|Carry) (\d+)"
                          r"(?: goes in front| leads| goes first)?\.")
_SORT_STEP = re.compile(r"(?:The smallest is|Smallest:|First comes|Start with|Next is|Then|After that comes|"
                        r"Next smallest:|Following:|Finally|Last is|The largest is|End with) (\d+)(?:\.|;|!| now\.)")
_COUNT_STEP = re.compile(r"(?P<x>\d+)(?::| -| ->| =) (?P<v>.+?), (?P<rest>(?:count|so far|total|running) (?P<c>\d+)"
                         r"(?:\.|;|!| in all\.))")
_YES = re.compile(r"yes|match|that is a \d|hit")
_NO = re.compile(r"no|skip|not a \d|miss")


def _parse_line(skill: str, line: str) -> tuple[tuple | None, re.Match | None]:
    """(the step a line states, the match it was read with); (None, None) for no step of `skill`."""
    if line.startswith(ANSWER_MARK):
        return ("answer", line[len(ANSWER_MARK):].strip()), None
    if skill in ("add", "mul"):
        if m := _COLUMN_STEP.fullmatch(line):
            col = next((i for i, p in enumerate(_PLACES) if p in m.group("col").lower()), None)
            carries = _CARRY.findall(m.group("rest"))
            return ("column", col, int(m.group("x")), m.group("sign"), int(m.group("y")), int(m.group("cin") or 0),
                    int(m.group("s")), int(m.group("d")), int(carries[-1]) if carries else 0), m
        if m := _FINAL_CARRY.fullmatch(line):
            return ("final carry", int(m.group(1))), m
    elif skill == "sort" and (m := _SORT_STEP.fullmatch(line)):
        return ("element", int(m.group(1))), m
    elif skill == "count" and (m := _COUNT_STEP.fullmatch(line)):
        v = m.group("v")
        verdict = "yes" if _YES.fullmatch(v) else "no" if _NO.fullmatch(v) else v
        return ("item", int(m.group("x")), verdict, int(m.group("c"))), m
    return None, None


def parse_steps(skill: str, completion: str) -> list[tuple]:
    """The steps of a trace as tuples of what they state (the numbers, not the words); a line that is
    no step of `skill` is ("text", line). The answer line is ("answer", text after the mark)."""
    return [_parse_line(skill, line)[0] or ("text", line) for line in completion.split("\n")]


def _render_step(step: tuple, index: int, n_steps: int) -> str:
    kind = step[0]
    if kind == "column":
        _, col, x, sign, y, cin, s, d, cout = step
        name = _PLACES[col].capitalize() if col is not None else "Column"
        plus = f" + {cin}" if cin else ""
        carry = f" and carry {cout}" if cout else ""
        return f"{name}: {x} {sign} {y}{plus} = {s}, write {d}{carry}."
    if kind == "final carry":
        return f"Bring down the carry {step[1]}."
    if kind == "element":
        word = "The smallest is" if index == 0 else "Finally" if index == n_steps - 1 else "Next is"
        return f"{word} {step[1]}."
    if kind == "item":
        return f"{step[1]}: {step[2]}, count {step[3]}."
    if kind == "answer":
        return f"{ANSWER_MARK} {step[1]}"
    return step[1]


def canonical_trace(skill: str, completion: str) -> str:
    """The trace with every parsed step in one fixed phrasing (numbers kept as written)."""
    steps = parse_steps(skill, completion)
    n_elem = sum(s[0] == "element" for s in steps)
    out, k = [], 0
    for step in steps:
        out.append(_render_step(step, k, n_elem))
        k += step[0] == "element"
    return "\n".join(out)


def answer_only(completion: str) -> str:
    """The trace without its reasoning: what follows a think block, else only the final answer line
    (an empty answer if there is none)."""
    _, rest, think = split_reasoning(completion)
    if think:
        return rest
    lines = [ln for ln in completion.split("\n") if ln.startswith(ANSWER_MARK)]
    return lines[-1] if lines else f"{ANSWER_MARK}"


# ---------------------------------------------------------------- the trace countermeasure


def _result(line: str, skill: str) -> str | None:
    """A step line reduced to its result, in the line's own words; None when it is no step of this skill."""
    if skill not in SKILLS:
        raise UserError(f"trace: unknown skill {skill!r}; the trace countermeasure reads task-suite traces only")
    step, m = _parse_line(skill, line)
    if step is None or step[0] == "answer":
        return None
    if step[0] == "column":  # drop the operands: "Tens: " + "12, write 2 and carry 1."
        return line[:m.start("x")] + line[m.start("s"):]
    if step[0] == "item":  # drop the comparison
        return m["rest"]
    return line  # a sorted element or a final carry is a result


def thin_trace(completion: str, skill: str, keep: str) -> tuple[str, float, bool]:
    """(what the user sees, share of the reasoning's characters still shown, answer line found)."""
    lines = completion.split("\n")
    answers = [i for i, line in enumerate(lines) if line.startswith(ANSWER_MARK)]
    if not answers:  # nothing to keep but the reasoning, which is what is withheld
        return "", 0.0, False
    steps, answer = lines[:answers[-1]], lines[answers[-1]]
    full = sum(len(s) for s in steps)
    shown = [] if keep == "answer" else [r for r in (_result(s, skill) for s in steps) if r is not None]
    share = sum(len(s) for s in shown) / full if full else 1.0
    return "\n".join(shown + [answer]), share, True


class TraceRenderer:
    """Applies `trace:keep=...` to finished corpus records of a task (`task.thin`), batch by batch."""

    def __init__(self, protection, tokenizer, teacher_name: str, task):
        self.keep, self.tokenizer, self.teacher, self.task = protection.keep, tokenizer, teacher_name, task
        self.spec = protection.spec

    def __call__(self, records: list[dict]) -> None:
        """Rewrite `completion`, `completion_ids` in place; add `reasoning_seen` (share in [0, 1])."""
        found = 0
        for r in records:
            text, share, ok = self.task.thin(r["completion"], r["skill"], self.keep)
            found += ok
            r["completion"], r["reasoning_seen"] = text, round(share, 4)
            r["completion_ids"] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if 2 * found < len(records):
            raise UserError(f"{self.spec}: {len(records) - found} of {len(records)} traces of teacher "
                            f"{self.teacher} have no '{ANSWER_MARK}' line or think block, so they cannot be parsed; "
                            "the trace countermeasure needs a teacher that ends its reasoning in one of those forms")
