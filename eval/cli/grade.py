"""`antidistill grade`: what a model can do on the task suite, without Python (JSON out)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "grade", help="grade a model folder on the task suite's held-out test split (per-skill accuracy, JSON)",
        description="Greedy answers of MODEL to N held-out task-suite problems, graded by exact match of the "
                    "final answer: per-skill accuracy with exact (Clopper-Pearson) 95%% intervals, as JSON on stdout "
                    "(and in --out).")
    p.add_argument("model", metavar="MODEL", help="a model folder (a `train` output folder works), a preset or 'demo'")
    p.add_argument("--n-test", type=int, default=400, help="test problems, split evenly over the skills (default 400)")
    p.add_argument("--seed", type=int, default=0, help="which test problems are drawn")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--items", metavar="CSV", help="also write each item's id, skill and correctness here")
    p.add_argument("--out", metavar="JSON", help="also write the result here")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from antidistill.students.models import load_model
    from antidistill.students.tasks import make_split
    from antidistill.watermark.errors import UserError, atomic_write

    from ..experiment.runner import library_chatter
    from ..measures.stats import clopper_pearson
    from ..measures.transfer import grade_items

    for name in ("n_test", "max_new_tokens", "batch_size"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
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
