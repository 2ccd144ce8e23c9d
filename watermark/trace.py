"""Reasoning withheld or thinned: the chain-of-thought countermeasure.

Distillers elicit step-by-step reasoning because it teaches far more than answers do
(DistillGuard, arXiv 2603.07835: removing chain-of-thought cut a student's MATH score from 67.8 to
31.4). `keep=answer` returns only the final answer line; `keep=results` returns each step's result
but not its working. It acts on the finished text, not on sampling, so it has no processor here:
the rendering needs to know the traces' steps, which the task suite does (students/traces.py).
"""
from __future__ import annotations

from .spec import Param, Protection, register


@register
class Trace(Protection):
    scheme = "trace"
    params = (Param("keep", str, "answer", choices=("answer", "results")),)
    acts_on = "text"
