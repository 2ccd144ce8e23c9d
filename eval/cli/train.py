"""`antidistill train`: distil a student on one corpus or a mixture of two (full or LoRA, SFT or KD)."""
from __future__ import annotations

import argparse
import json

from .options import POSITIVE, SEED, real


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="distil a student on teacher corpora",
        description="Train STUDENT on the completions of --corpus (a fraction --mix from a second --corpus). "
                    "Rerun the same command after an interruption to resume from the last checkpoint.")
    p.add_argument("--student", required=True, help="preset (tiny, small, ...), 'demo', a model folder or a hub id")
    p.add_argument("--corpus", required=True, action="append", metavar="DIR",
                   help="corpus folder; give it twice with --mix to mix the second into the first")
    p.add_argument("--mix", type=real(0, 1), metavar="RHO", help="fraction of examples taken from the second corpus")
    p.add_argument("--out", required=True, help="output folder (model/, checkpoints/, train_manifest.json)")
    p.add_argument("--mode", default="sft", choices=("sft", "logit-kd"))
    p.add_argument("--lora", metavar="SPEC", help="LoRA instead of full fine-tuning, e.g. r=16,alpha=32")
    p.add_argument("--epochs", type=real(0, 1000, lo_open=True), default=1.0)
    p.add_argument("--max-steps", type=POSITIVE, help="stop after this many optimiser steps (overrides --epochs)")
    p.add_argument("--lr", type=real(0, 1, lo_open=True), help="learning rate (default: 3e-3 from scratch, 3e-4 full fine-tuning, "
                                            "2e-3 LoRA)")
    p.add_argument("--batch-size", type=POSITIVE, default=16)
    p.add_argument("--save-steps", type=POSITIVE, default=200, help="checkpoint every N steps")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--retokenize", action=argparse.BooleanOptionalAction, default=None,
                   help="sft only: re-encode the corpus text with the student's tokenizer (default: exactly when "
                        "the corpus was tokenized by another tokenizer; logit KD then is refused)")
    p.add_argument("--group-by-length", action=argparse.BooleanOptionalAction, default=False,
                   help="batches of similar lengths in random order (less padding; on a task whose skills differ "
                        "in length each batch then holds one skill, which can slow learning), instead of random ones")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from antidistill.students.training.distill import train_student
    from antidistill.watermark.errors import UserError

    if len(args.corpus) > 2:
        raise UserError("give --corpus once, or twice with --mix (the second is mixed into the first)")
    from ..experiment.runner import library_chatter

    with library_chatter(verbose=False):  # the training bar only, no "Loading weights"/"Writing model shards"
        manifest = train_student(
            args.student, args.corpus[0], args.out, mix_corpus=args.corpus[1] if len(args.corpus) == 2 else None,
            mix=args.mix, mode=args.mode, lora=args.lora, epochs=args.epochs, max_steps=args.max_steps, lr=args.lr,
            batch_size=args.batch_size, seed=args.seed, save_steps=args.save_steps, retokenize=args.retokenize,
            group_by_length=args.group_by_length, progress=not args.quiet, device=args.device)
    print(json.dumps({"out": args.out, "model": f"{args.out}/model", "global_step": manifest["global_step"],
                      "train_loss": manifest["train_loss"], "tokens_per_second": manifest["tokens_per_second"]}))
    return 0
