"""`antidistill run`: the whole experiment from a config (teacher -> corpora -> students -> evals -> report)."""
from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from .options import POSITIVE

if TYPE_CHECKING:
    from ..experiment.results import RunResults


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "run", help="run an experiment (default: the built-in demo) and write results/NAME/report.md",
        description="Run CONFIG.toml (or a built-in --preset; with neither, the default preset): teacher, protected "
                    "corpora, distilled students, the four evaluations, then results/NAME/ with report.md, CSVs and "
                    "PNGs. Every stage is cached under $ANTIDISTILL_CACHE by a hash of its inputs, so a rerun "
                    "recomputes only what changed.")
    p.add_argument("config", nargs="?", help="TOML config (keys override the preset it names)")
    p.add_argument("--preset", help="a built-in config by name, e.g. default or smoke (a wrong name lists them all)")
    p.add_argument("--out", help="results folder (default results/NAME)")
    p.add_argument("--cache-dir", help="cache folder (default $ANTIDISTILL_CACHE or ~/.cache/antidistill)")
    p.add_argument("--threads", type=POSITIVE, metavar="N",
                   help="torch threads per process (overrides the config's `threads`; default: the free cores, "
                        "split over the processes, per stage)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--verbose", action="store_true",
                   help="also the inner progress bars (generation, training) and library messages")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from antidistill.watermark.errors import UserError

    from ..experiment.config import load_config
    from ..experiment.runner import run_experiment

    if args.config and args.preset:
        raise UserError("give a CONFIG.toml or --preset, not both (a config may name its preset: preset = \"smoke\")")
    cfg = load_config(args.config, args.preset)
    if args.threads:
        cfg = dataclasses.replace(cfg, threads=args.threads)
    out = args.out or f"results/{cfg.name}"
    result = run_experiment(cfg, out, cache_dir=args.cache_dir, quiet=args.quiet, verbose=args.verbose)
    if not args.quiet:
        print(summary(result["results"]))
    print(f"{result['out']}/report.md  ({result['meta']['wall_seconds']:.0f} s, "
          f"{len(result['log'].computed())} stages computed)")
    return 0


def summary(res: RunResults) -> str:
    """The run's results in a few lines: per protection, teacher and student accuracy, DE."""
    if res.transfer is None:
        return ""
    t = res.transfer
    t = t[t.skill == "all"].set_index("student")
    q = res.quality.set_index("protection") if res.quality is not None else None
    lines = [f"{'protection':<42} {'teacher':>8} {'student [95% CI]':>22} {'DE [95% CI]':>18}"]
    for s in t.index:
        spec = "none" if s == "raw" else s
        r = t.loc[s]
        teacher = f"{q.loc[spec, 'accuracy']:.1%}" if q is not None and spec in q.index else ""
        de = f"{r.de:.2f} [{r.de_lo:.2f}, {r.de_hi:.2f}]" if s != "base" else ""
        lines.append(f"{s:<42} {teacher:>8} {f'{r.accuracy:.1%} [{r.acc_lo:.1%}, {r.acc_hi:.1%}]':>22} {de:>18}")
    return "\n".join(lines)
