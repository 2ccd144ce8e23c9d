"""`antidistill grade`: what a model can do on the task suite, without Python (JSON out)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from antidistill.students.tasks.suite import N_TEST_MAX

from .options import POSITIVE, SEED, integer


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "grade", help="grade a model folder on the task suite's held-out test split (per-skill accuracy, JSON)",
        description="Greedy answers of MODEL to N held-out task-suite problems, graded by exact match of the "
                    "final answer: per-skill accuracy with exact (Clopper-Pearson) 95%% intervals, as JSON on stdout "
                    "(and in --out).")
    p.add_argument("model", metavar="MODEL", help="a model folder (a `train` output folder works), a preset or 'demo'")
    p.add_argument("--n-test", type=integer(1, N_TEST_MAX), default=400,
                   help=f"test problems, split evenly over the skills (default 400, at most {N_TEST_MAX:,})")
    p.add_argument("--seed", type=SEED, default=0, help="which test problems are drawn")
    p.add_argument("--max-new-tokens", type=POSITIVE, default=128)
    p.add_argument("--batch-size", type=POSITIVE, default=100)
    p.add_argument("--items", metavar="CSV", help="also write each item's id, skill and correctness here")
    p.add_argument("--out", metavar="JSON", help="also write the result here")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from antidistill.students.models.loader import load_model
    from antidistill.students.tasks.suite import make_split
    from antidistill.watermark.errors import atomic_write, check_writable

    from ..experiment.runner import library_chatter
    from ..measures.stats import clopper_pearson
    from ..measures.transfer import grade_items

    for path in (args.out, args.items):  # before grading: a path refused after minutes of grading loses them
        if path:
            check_writable(path)
    with library_chatter(verbose=False):
        model, tok = load_model(args.model)
        items = grade_items(model, tok, make_split("test", args.n_test, seed=args.seed),
                            batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    skills = {}
    for skill, g in [*items.groupby("skill"), ("all", items)]:
        k, n = int(g["correct"].sum()), len(g)
        lo, hi = clopper_pearson(k, n)
        skills[skill] = {"accuracy": round(k / n, 4), "ci95": [round(lo, 4), round(hi, 4)], "correct": k, "n": n}
    result = {"model": args.model, "split": "test", "n_test": args.n_test, "seed": args.seed,
              "decoding": "greedy", "max_new_tokens": args.max_new_tokens, "skills": skills}
    text = json.dumps(result, indent=2)
    if args.out:
        with atomic_write(Path(args.out)) as fh:
            fh.write(text + "\n")
    if args.items:
        with atomic_write(Path(args.items)) as fh:
            items.to_csv(fh, index=False)
    print(text)
    return 0
