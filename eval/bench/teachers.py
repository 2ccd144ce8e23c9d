"""Teachers: a model's greedy accuracy on tasks' test splits, before any student is trained on it.

    python -m antidistill.eval.bench.teachers --model smollm2 --tasks "gym:A;gym:B,k=v" \\
        [--n 32] [--max-new-tokens 256] [--batch-size 16] [--seed 0] [--out results/teachers/smollm2]

A distillation bench needs a teacher that can do the task: a student of a teacher at 5% learns
nothing measurable, protected or not. Per task (specs separated by `;`, as `--task` takes them):
`n` test problems (seed `--seed`), greedy answers through the model's chat template when it has one
(`students.batching.encode_prompts`, as `grade_items`), graded by the task's own grader. Written to
`--out`: `teachers.csv` (accuracy with its exact 95% Clopper-Pearson interval, mean completion
tokens, the share of completions where an answer was found by an explicit convention -- `Answer:`,
tags, boxed, #### -- the share cut at --max-new-tokens, seconds), `teachers.md` (the table, the
machine, the command, a reading) and `completions.jsonl` (every answer, to check the grading).
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import pandas as pd

from antidistill.watermark.errors import UserError, atomic_write

from ..cli import Parser
from ..cli.options import POSITIVE, SEED, integer
from ..core.jobs import library_chatter
from ..measures.stats import clopper_pearson

COLUMNS = ("task", "n", "correct", "accuracy", "ci_lo", "ci_hi", "mean_tokens", "answer_found", "truncated",
           "seconds", "correct_last_number", "accuracy_last_number")
USEFUL = 0.40  # the bar for a teacher worth distilling from


def grade_task(model, tok, task, n: int, *, seed: int = 0, max_new_tokens: int = 256, batch_size: int = 16,
               bar=None) -> tuple[dict, list[dict]]:
    """(one table row, one record per item) for `model` on `n` test problems of `task`, greedy."""
    from antidistill.students.batching import encode_prompts
    from antidistill.students.models.sampling import generate_batch
    from antidistill.students.tasks.answers import extract_answer

    t0 = time.perf_counter()
    examples = task.examples("test", n, seed)
    prompts = encode_prompts(tok, [e.prompt for e in examples])
    order = sorted(range(len(examples)), key=lambda i: len(prompts[i]))  # like lengths together: less padding
    records: list[dict | None] = [None] * len(examples)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        out = generate_batch(model, tok, [prompts[i] for i in idx], max_new_tokens=max_new_tokens, do_sample=False)
        texts = tok.batch_decode(out.completions, skip_special_tokens=True)
        for i, text, ids, stop in zip(idx, texts, out.completions, out.stops):
            e = examples[i]
            answer, how = extract_answer(text, fallback="line")
            ok = bool(task.correct(e, text))
            # diagnostic only: the task's grader on the completion's last number where no convention
            # found an answer and the last line was graded ("42 + 74 = 116" -> 116)
            number = extract_answer(text, fallback="number")[0] if how == "last-line" else None
            lenient = ok or (number is not None and bool(task.correct(e, f"Answer: {number}")))
            records[i] = {"task": task.spec, "id": e.id, "answer": e.answer, "extracted": answer, "found_by": how,
                          "correct": ok, "correct_last_number": lenient, "tokens": len(ids), "stop": stop,
                          "completion": text}
        if bar is not None:
            bar.update(len(idx))
    k = sum(r["correct"] for r in records)
    lo, hi = clopper_pearson(k, len(records))
    m = max(len(records), 1)
    row = {"task": task.spec, "n": len(records), "correct": k, "accuracy": k / m, "ci_lo": lo, "ci_hi": hi,
           "mean_tokens": sum(r["tokens"] for r in records) / m,
           "answer_found": sum(r["found_by"] not in ("last-line", "none") for r in records) / m,
           "truncated": sum(r["stop"] == "length" for r in records) / m,
           "seconds": time.perf_counter() - t0}
    row["correct_last_number"] = sum(r["correct_last_number"] for r in records)
    row["accuracy_last_number"] = row["correct_last_number"] / m
    return row, records


def run(model_name: str, specs: list[str], n: int, *, seed: int = 0, max_new_tokens: int = 256,
        batch_size: int = 16, progress: bool = True, cache_dir=None) -> tuple[pd.DataFrame, list[dict]]:
    from tqdm.auto import tqdm

    from antidistill.students.models.loader import load_model
    from antidistill.students.tasks.registry import parse_task

    tasks = [parse_task(s) for s in specs]  # a bad spec fails before the model loads
    with library_chatter(verbose=False):
        model, tok = load_model(model_name, cache_dir=cache_dir)
        rows, records = [], []
        with tqdm(total=n * len(tasks), desc=f"teachers {model_name}", unit="item", disable=not progress,
                  file=sys.stderr) as bar:
            for task in tasks:
                bar.set_postfix_str(task.spec, refresh=True)
                row, recs = grade_task(model, tok, task, n, seed=seed, max_new_tokens=max_new_tokens,
                                       batch_size=batch_size, bar=bar)
                rows.append(row)
                records += recs
    return pd.DataFrame(rows, columns=list(COLUMNS)), records


def reading(table: pd.DataFrame, max_new_tokens: int) -> list[str]:
    """Facts read off the table (the interval decides, not the point estimate)."""
    lines = []
    sure = table[table.ci_lo >= USEFUL]
    point = table[(table.accuracy >= USEFUL) & (table.ci_lo < USEFUL)]
    if len(sure):
        lines.append(f"- At or above {USEFUL:.0%} with the whole 95% interval: {', '.join(f'`{t}`' for t in sure.task)}.")
    if len(point):
        lines.append(f"- At or above {USEFUL:.0%} on the point estimate only (the interval reaches below): "
                     f"{', '.join(f'`{t}`' for t in point.task)}.")
    if not len(sure) and not len(point):
        lines.append(f"- No task reaches {USEFUL:.0%}; the best is `{table.loc[table.accuracy.idxmax(), 'task']}` "
                     f"at {table.accuracy.max():.0%}.")
    lenient = table[(table.accuracy_last_number >= USEFUL) & (table.accuracy < USEFUL)]
    if len(lenient):
        lines.append(f"- At or above {USEFUL:.0%} only when a last line's last number is taken as the answer "
                     "(the diagnostic column, not the task's score): "
                     f"{', '.join(f'`{t}` ({v:.0%})' for t, v in zip(lenient.task, lenient.accuracy_last_number))}.")
    low = table[table.answer_found < 0.5]
    if len(low):
        lines.append("- Under half the completions state the answer by a convention (`Answer:` etc.), so the grader "
                     f"reads their last line: {', '.join(f'`{t}`' for t in low.task)}.")
    cut = table[table.truncated > 0.1]
    if len(cut):
        lines.append(f"- Over 10% of completions hit --max-new-tokens {max_new_tokens} (an answer may be cut off): "
                     f"{', '.join(f'`{t}` ({v:.0%})' for t, v in zip(cut.task, cut.truncated))}.")
    return lines


def markdown(table: pd.DataFrame, meta: dict, note: str = "") -> str:
    md = [f"# Teacher accuracy: {meta['model']}", "",
          f"`{meta['command']}`", "",
          f"{meta['n']} test problems per task (seed {meta['seed']}), greedy, at most {meta['max_new_tokens']} new "
          f"tokens, batch size {meta['batch_size']}; the task's own grader (gym: the dataset's `score_answer` on the "
          "extracted answer). CPU: {cpu} ({threads} torch thread(s)); {wall:.0f} s wall in all.".format(
              cpu=meta["cpu_model"], threads=meta["torch_threads"], wall=meta["wall_s"]), "",
          "| task | n | correct | accuracy | 95% CI | mean tokens | answer found | cut at max | seconds "
          "| accuracy, last number |",
          "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    md += [f"| `{r.task}` | {r.n} | {r.correct} | {r.accuracy:.3f} | [{r.ci_lo:.3f}, {r.ci_hi:.3f}] | "
           f"{r.mean_tokens:.1f} | {r.answer_found:.2f} | {r.truncated:.2f} | {r.seconds:.0f} | "
           f"{r.accuracy_last_number:.3f} |" for r in table.itertuples()]
    md += ["", "*answer found*: share of completions whose answer was read by an explicit convention (`Answer:` line, "
           "`<answer>` tags, `\\boxed{}`, `####`); the rest were graded on their last line. *cut at max*: share that "
           "stopped at the token limit, not at EOS. *accuracy, last number*: a diagnostic, not the task's "
           "score: a completion graded on its last line counts as correct when its last number is (the task's "
           "grader on `Answer: <last number>`), e.g. `42 + 74 = 116`. Every completion is in `completions.jsonl`.", "",
           "## Reading", "", *reading(table, meta["max_new_tokens"])]
    if note:
        md += ["", note.strip()]
    return "\n".join(md) + "\n"


def command(argv: list[str]) -> str:
    """The command line as typed, the note's text left out (it is printed under the reading)."""
    shown, skip = [], False
    for a in argv:
        shown.append("<the note below>" if skip else ("--note" if a.startswith("--note=") else a))
        skip = a == "--note"
        if a.startswith("--note="):
            shown.append("<the note below>")
    return shlex.join(["python", "-m", "antidistill.eval.bench.teachers", *shown])


def main(argv=None) -> int:
    p = Parser(prog="python -m antidistill.eval.bench.teachers", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2", help="a preset, 'smollm2', 'demo' or a model folder (default smollm2)")
    p.add_argument("--tasks", required=True, help="task specs separated by ';', e.g. 'gym:chain_sum;gym:leg_counting'")
    p.add_argument("--n", type=POSITIVE, default=32, help="test problems per task (default 32)")
    p.add_argument("--seed", type=SEED, default=0, help="which test problems are drawn (default 0)")
    p.add_argument("--max-new-tokens", type=POSITIVE, default=256)
    p.add_argument("--batch-size", type=POSITIVE, default=16)
    p.add_argument("--threads", type=integer(1, 1024), help="torch threads (default: torch's own)")
    p.add_argument("--note", default="", help="a paragraph added to the reading in teachers.md")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", default="results/teachers/smollm2")
    args = p.parse_args(argv)
    specs = [s.strip() for s in args.tasks.split(";") if s.strip()]
    if not specs:
        p.error("argument --tasks: give at least one task spec")
    import torch

    from ..experiment.runner import cpu_info

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        table, records = run(args.model, specs, args.n, seed=args.seed, max_new_tokens=args.max_new_tokens,
                             batch_size=args.batch_size, progress=not args.quiet)
    except UserError as err:
        p.exit(2, f"{p.prog}: error: {err}\n")
    cpu = cpu_info()
    meta = {"model": args.model, "n": args.n, "seed": args.seed, "max_new_tokens": args.max_new_tokens,
            "batch_size": args.batch_size, "cpu_model": cpu["cpu_model"], "torch_threads": cpu["torch_threads"],
            "wall_s": time.perf_counter() - t0,
            "command": command(argv if argv is not None else sys.argv[1:])}
    with atomic_write(out / "teachers.csv") as fh:
        table.round(4).to_csv(fh, index=False)
    with atomic_write(out / "completions.jsonl") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    text = markdown(table, meta, args.note)
    with atomic_write(out / "teachers.md") as fh:
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
