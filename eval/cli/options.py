"""Argument types that refuse, at parse time, numbers a command cannot use (one line, exit 2).

    p.add_argument("--alpha", type=real(0, 1, lo_open=True, hi_open=True))
    -> antidistill detect: error: argument --alpha: must be a number with 0 < x < 1, got 'inf'
"""
from __future__ import annotations

import argparse
import math

SEED_MAX = 2**32 - 1  # numpy and torch both accept seeds below 2**32


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _range(lo, hi, lo_open: bool, hi_open: bool) -> str:
    lo_op, hi_op = ("<" if lo_open else "<="), ("<" if hi_open else "<=")
    if lo is not None and hi is not None:
        return f"{_fmt(lo)} {lo_op} x {hi_op} {_fmt(hi)}"
    if lo is not None:
        return f"x {lo_op.replace('<', '>')} {_fmt(lo)}"
    return f"x {hi_op} {_fmt(hi)}" if hi is not None else "any x"


def real(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False):
    """A finite float in [lo, hi] (an end open when asked)."""
    rule = _range(lo, hi, lo_open, hi_open)

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and (lo is None or (value > lo if lo_open else value >= lo)) \
            and (hi is None or (value < hi if hi_open else value <= hi))
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a finite number with {rule}, got {raw!r}")
        return value

    return parse


def integer(lo: int | None = None, hi: int | None = None):
    """A whole number in [lo, hi]."""
    rule = _range(lo, hi, False, False)

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer with {rule}, got {raw!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be an integer with {rule}, got {raw!r}")
        return value

    return parse


TASK_HELP = ("task spec: demo (the default, the four procedural skills), gym:NAME[,param=value...] (a reasoning-gym "
             "dataset; gsm = gym:gsm_symbolic), jsonl:path=FILE[,grader=numeric|exact|choice|regex,pattern=RE]")


def add_task(parser: argparse.ArgumentParser, what: str) -> None:
    """`--task SPEC` (default demo); `what` says what the command takes from the task."""
    parser.add_argument("--task", default="demo", metavar="SPEC", help=f"{TASK_HELP}; {what} (default: demo)")


ALPHA = real(0, 1, lo_open=True, hi_open=True)
SEED = integer(0, SEED_MAX)
POSITIVE = integer(1)
COUNT = integer(0)
