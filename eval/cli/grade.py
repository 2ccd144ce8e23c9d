"""`antidistill grade`: what a model can do on a task's held-out test split, without Python (JSON out)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from antidistill.students.tasks.suite import N_TEST_MAX

from .options import POSITIVE, SEED, add_task, integer


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "grade", help="grade a model on a task's held-out test split (per-skill accuracy, JSON)",
        description="Greedy answers of MODEL to N held-out problems of --task (default: the demo suite), graded "
                    "by the task's grader (full credit counts as correct): per-skill accuracy with exact "
                    "(Clopper-Pearson) 95%% intervals, as JSON on stdout (and in --out).")
    p.add_argument("model", metavar="MODEL", help="a model folder (a `train` output folder works), a preset or 'demo'")
    add_task(p, "MODEL answers its test split")
    p.add_argument("--n-test", type=integer(1, N_TEST_MAX), default=400,
                   help=f"test problems (default 400, at most {N_TEST_MAX:,}; the demo's are split evenly over its "
                        "skills; a task whose test split holds fewer refuses more than it holds)")
    p.add_argument("--seed", type=SEED, default=0, help="which test problems are drawn")
    p.add_argument("--max-new-tokens", type=POSITIVE, default=128)
    p.add_argument("--batch-size", type=POSITIVE, default=100)
    p.add_argument("--items", metavar="CSV", help="also write each item's id, skill and correctness here")
    p.add_argument("--out", metavar="JSON", help="also write the result here")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from antidistill.students.models.loader import load_model
    from antidistill.students.tasks.registry import parse_task
    from antidistill.watermark.errors import UserError, atomic_write, check_writable

    from ..experiment.runner import library_chatter
    from ..measures.stats import clopper_pearson
    from ..measures.transfer import grade_items

    for path in (args.out, args.items):  # before grading: a path refused after minutes of grading loses them
        if path:
            check_writable(path)
    task = parse_task(args.task)
    try:  # a split too small for --n-test refuses here, before the model is loaded
        examples = task.examples("test", args.n_test, seed=args.seed)
    except UserError as err:
        raise UserError(f"{err} (--n-test {args.n_test})") from None
    with library_chatter(verbose=False):
        model, tok = load_model(args.model)
        items = grade_items(model, tok, examples, task=task, batch_size=args.batch_size,
                            max_new_tokens=args.max_new_tokens)
    skills = {}
    for skill, g in [*items.groupby("skill"), ("all", items)]:
        k, n = int(g["correct"].sum()), len(g)
        lo, hi = clopper_pearson(k, n)
        skills[skill] = {"accuracy": round(k / n, 4), "ci95": [round(lo, 4), round(hi, 4)], "correct": k, "n": n}
    result = {"model": args.model, "task": task.spec, "task_key": task.key, "split": "test", "n_test": args.n_test,
              "seed": args.seed, "decoding": "greedy", "max_new_tokens": args.max_new_tokens, "skills": skills}
    text = json.dumps(result, indent=2)
    if args.out:
        with atomic_write(Path(args.out)) as fh:
            fh.write(text + "\n")
    if args.items:
        with atomic_write(Path(args.items)) as fh:
            items.to_csv(fh, index=False)
    print(text)
    return 0
