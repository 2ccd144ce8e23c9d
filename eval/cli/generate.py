"""`antidistill generate`: sample a teacher on prompts under a protection into a resumable corpus."""
from __future__ import annotations

import argparse
import json

from .options import COUNT, POSITIVE, SEED, add_task, real


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "generate", help="sample a teacher under a protection into a corpus folder",
        description="Sample TEACHER on the prompts under PROTECTION and write JSONL shards plus manifest.json "
                    "to OUT. Rerun the same command after an interruption to finish the corpus.")
    p.add_argument("--teacher", default="demo", help="'demo', a preset, a model folder or a hub id (default: demo)")
    p.add_argument("--protection", default="none",
                   help="protection spec, e.g. none, kgw:gamma=0.25,delta=2, temperature:t=1.5, trace:keep=answer, "
                        "ads:lam=1,eps=0.01,proxy=distilled (a proxy is built and cached on first use)")
    p.add_argument("--key-file", help="file with the secret key (default: $ANTIDISTILL_KEY)")
    p.add_argument("--prompts", required=True,
                   help="N (N prompts of the task's distillation split, drawn with --seed) or a "
                        ".jsonl ({\"prompt\": ...}) / .txt file")
    add_task(p, "--prompts N draws from its distillation split; the manifest records it")
    p.add_argument("--out", required=True, help="corpus folder to write (or finish)")
    p.add_argument("--temperature", type=real(0, 100, lo_open=True), default=1.0,
                   help="sampling temperature, 0 < T <= 100 (default 1)")
    p.add_argument("--max-new-tokens", type=POSITIVE, default=128)
    p.add_argument("--topk-logprobs", type=COUNT, default=0, metavar="K",
                   help="also store the top-K log-probabilities per generated token (for logit KD)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--batch-size", type=POSITIVE, default=32)
    p.add_argument("--shard-size", type=POSITIVE, default=256, help="records per shard (the unit of resumption)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from antidistill.students.protect.generate import generate_corpus
    from antidistill.students.protect.prepare import check_inputs
    from antidistill.students.tasks.registry import parse_task
    from antidistill.watermark import UserError, parse_protection

    from ..experiment.runner import library_chatter

    # Before any folder or model: a bad task, or a protection the task cannot carry (trace:keep=results
    # on free-form traces), is refused in one line, not after the teacher is loaded (or trained).
    task, protection = parse_task(args.task), parse_protection(args.protection)
    check_inputs(protection, [], args.topk_logprobs, task)
    count = args.prompts.strip()
    if count.isdigit() and int(count) > 0 and task.family != "demo":
        # A split too small for N refuses here, before the teacher. Generation draws the same prompts
        # again from this task object, at no cost (a gym task keeps its drawn stream, a file task its
        # rows); the demo's split holds >= 80,000 and a demo draw is not kept, so it is drawn once.
        try:
            task.examples("distill", int(count), seed=args.seed)
        except UserError as err:
            raise UserError(f"{err} (--prompts {count})") from None
    with library_chatter(verbose=False):  # our own bar only, no "Loading weights" bars
        manifest = generate_corpus(
            args.teacher, args.out, protection=protection, key_file=args.key_file, prompts=args.prompts, task=task,
            temperature=args.temperature, max_new_tokens=args.max_new_tokens, topk_logprobs=args.topk_logprobs,
            seed=args.seed, batch_size=args.batch_size, shard_size=args.shard_size, device=args.device,
            progress=not args.quiet)
    counts = manifest["counts"]
    print(json.dumps({"out": args.out, "protection": manifest["protection"], "task": task.spec,
                      "key_fingerprint": manifest["key_fingerprint"], **counts,
                      "tokens_per_second": manifest["tokens_per_second"]}))
    return 0
