"""Tasks as specs, in one registry (as protections and attacks are): `parse_task("gym:chain_sum")`.

    demo                                   the project's four procedural skills (default; suite.py)
    gym:NAME[,param=value...]              a reasoning-gym dataset, graded by its own score_answer (gym.py)
    gsm                                    alias of gym:gsm_symbolic
    jsonl:path=FILE[,grader=...,pattern=]  a user's own file of prompts and answers (jsonl.py)
    natural[:gsm=F]                        the shipped instructions (ungraded) mixed with a share F of
                                           gsm_symbolic problems (default 0.25; natural.py)

A task owns what a bench needs of a benchmark: disjoint `train` / `distill` / `test` splits
(deterministic; a problem belongs to one split only), a reference answer per problem, a grader
(completion -> score in [0, 1]; "correct" means full credit) and where a trace keeps its reasoning and
where its final answer (for the `trace` countermeasure and the `answer-only` / `canonicalize`
attacks; `supports` names what a task cannot do and why).
"""
from __future__ import annotations

from antidistill.watermark.errors import UserError

from .base import FEATURES, Task, accuracy_by_skill
from .demo import DemoTask

ALIASES = {"gsm": "gym:gsm_symbolic"}


def parse_task(spec: "str | Task | None") -> Task:
    """A task from its spec (None: demo); errors name the valid families."""
    if isinstance(spec, Task):
        return spec
    if spec is None:
        return DemoTask()
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"empty task spec; valid tasks: {describe()}")
    spec = ALIASES.get(spec.strip(), spec.strip())
    family, _, body = spec.partition(":")
    if family == "demo":
        if body:
            raise UserError("task demo takes no parameters (its difficulty is the demo teacher's [teacher.demo.tasks])")
        return DemoTask()
    if family == "gym":
        from .gym import GymTask  # reasoning-gym is an optional extra: imported only when asked for

        return GymTask.parse(body)
    if family == "jsonl":
        from .jsonl import JsonlTask

        return JsonlTask.parse(body)
    if family == "natural":
        from .natural import NaturalTask

        return NaturalTask.parse(body)
    raise UserError(f"unknown task {family!r}; valid tasks: {describe()}")


def describe() -> str:
    return ("demo, gym:NAME[,param=value...], gsm (gym:gsm_symbolic), jsonl:path=FILE[,grader=numeric|exact|choice|regex], "
            "natural[:gsm=F] (instructions + a share F of gsm_symbolic)")


__all__ = ["Task", "DemoTask", "parse_task", "describe", "FEATURES", "accuracy_by_skill"]
