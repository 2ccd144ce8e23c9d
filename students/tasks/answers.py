"""Reading the final answer out of a free-form completion, and the reasoning that precedes it.

A completion of a pretrained or reasoning model ends its reasoning in one of a few conventions;
`extract_answer` tries them in a fixed, documented order and says which it used:

  1. `<answer>...</answer>`  the last such block (reasoning-gym's own format)
  2. `\\boxed{...}`           the last one, nested braces allowed (MATH-style)
  3. `#### X`                the text after the last `####` (GSM8K-style)
  4. `Answer: X`             the text after the last `Answer:` (the demo suite's format), to the line end
  5. last line               the last non-empty line (only when `fallback="line"`)
  5. last number             the last number anywhere (only when `fallback="number"`)

A `<think>...</think>` block (a reasoning model's trace) is removed before any of them is looked for,
so a number inside the reasoning is never taken for the answer. `split_reasoning` returns the two
parts; the `trace:keep=answer` countermeasure and the `answer-only` attack keep only the second.
"""
from __future__ import annotations

import math
import re

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_LINE = re.compile(r"Answer:[ \t]*([^\n]*)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")
FALLBACKS = ("none", "line", "number")


def split_reasoning(completion: str) -> tuple[str, str, bool]:
    """(reasoning, what follows it, whether a think block was found). A completion that opens a
    think block and never closes it is all reasoning (a truncated trace has no answer)."""
    close = completion.rfind(THINK_CLOSE)
    if close >= 0:
        return completion[:close + len(THINK_CLOSE)], completion[close + len(THINK_CLOSE):].lstrip("\n "), True
    if THINK_OPEN in completion:
        return completion, "", True
    return "", completion, False


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None  # unbalanced: the completion was cut off inside the box


def extract_answer(completion: str, fallback: str = "none") -> tuple[str | None, str]:
    """(the final answer, whitespace-normalised, or None; the convention it was found by)."""
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    _, text, _ = split_reasoning(completion)
    for how, found in (("tag", _ANSWER_TAG.findall(text)), ("boxed", [b] if (b := _last_boxed(text)) else []),
                       ("hashes", _HASHES.findall(text)), ("answer-line", _ANSWER_LINE.findall(text))):
        if found and found[-1].strip():
            return " ".join(found[-1].split()), how
    if fallback == "line":
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return (lines[-1], "last-line") if lines else (None, "none")
    if fallback == "number":
        nums = _NUMBER.findall(text)
        return (nums[-1], "last-number") if nums else (None, "none")
    return None, "none"


def parse_number(text: str | None) -> float | None:
    """The number a short answer states ("1,234", "$12.50", "-3", "7.") or None; the last one when
    it states several, as a final answer after working usually does."""
    if text is None:
        return None
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        value = float(found[-1].replace(",", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def numbers_equal(a: float | None, b: float | None, rel: float = 1e-9) -> bool:
    """Equal numbers: 0.1 + 0.2 and 0.3 are, 1000000 and 1000001 are not (relative tolerance 1e-9)."""
    return a is not None and b is not None and abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def normalise(text: str | None) -> str | None:
    """Whitespace collapsed, a trailing period and surrounding quotes dropped (exact-match grading)."""
    if text is None:
        return None
    return " ".join(text.split()).strip("\"'`").rstrip(".").strip("\"'`") or None


_CHOICE = re.compile(r"\(?\b([A-J])\b\)?")


def parse_choice(text: str | None) -> str | None:
    """The option letter (A-J) a short answer names: "B", "(c)", "B) 42", "Option D" -> the first letter."""
    if text is None:
        return None
    m = _CHOICE.search(text.strip().upper().removeprefix("OPTION").strip())
    return m.group(1) if m else None
