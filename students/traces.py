"""Render the task suite's traces as the `trace` countermeasure shows them to a user.

`keep=answer` leaves the final `Answer:` line; `keep=results` leaves each step's result but not
its working: a column step "Tens: 4 + 7 + 1 = 12, write 2 and carry 1." becomes
"Tens: 12, write 2 and carry 1." (the operands are the working), a counting step
"7: yes, count 2." becomes "count 2." (the comparison is the working); a sorting step already is a
result and a final carry line is one. A line of no known step form is withheld (the user sees
less, never more). The share of the reasoning still shown is measured in characters.
"""
from __future__ import annotations

import re

from antidistill.watermark.errors import UserError

from .tasks import ANSWER_MARK

_COLUMN = re.compile(r"(?P<head>.+?:) \d+ [+x] \d+(?: \+ \d+)? = (?P<rest>\d+.*)")
_CARRY = re.compile(r"(?i)\D*\bcarry:? \d+\D*")
_SORT = re.compile(r"\D*\d+\D*")
_COUNT = re.compile(r"\d+(?::| -| ->| =) [^,]+, (?P<rest>.+)")


def _result(line: str, skill: str) -> str | None:
    """A step line reduced to its result, or None when it is no step of this skill."""
    if skill in ("add", "mul"):
        m = _COLUMN.fullmatch(line)
        if m:
            return f"{m['head']} {m['rest']}"
        return line if _CARRY.fullmatch(line) else None
    if skill == "sort":
        return line if _SORT.fullmatch(line) else None
    if skill == "count":
        m = _COUNT.fullmatch(line)
        return m["rest"] if m else None
    raise UserError(f"trace: unknown skill {skill!r}; the trace countermeasure reads task-suite traces only")


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
    """Applies `trace:keep=...` to finished corpus records of the task suite, batch by batch."""

    def __init__(self, protection, tokenizer, teacher_name: str):
        self.keep, self.tokenizer, self.teacher = protection.keep, tokenizer, teacher_name
        self.spec = protection.spec

    def __call__(self, records: list[dict]) -> None:
        """Rewrite `completion`, `completion_ids` in place; add `reasoning_seen` (share in [0, 1])."""
        found = 0
        for r in records:
            text, share, ok = thin_trace(r["completion"], r["skill"], self.keep)
            found += ok
            r["completion"], r["reasoning_seen"] = text, round(share, 4)
            r["completion_ids"] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if 2 * found < len(records):
            raise UserError(f"{self.spec}: {len(records) - found} of {len(records)} traces of teacher "
                            f"{self.teacher} have no '{ANSWER_MARK}' line, so they cannot be parsed; the trace "
                            "countermeasure needs a teacher that answers in the task suite's format")
