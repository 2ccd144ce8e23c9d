"""`antidistill traffic simulate | detect | run`: distillation campaigns in API traffic."""
from __future__ import annotations

import argparse

from .options import ALPHA, COUNT, POSITIVE, SEED

LOG_HELP = ("a log with columns request_id, account_id, timestamp, prompt, model (optional: payment_id, network, "
            "signup_route, region) as .parquet, .csv or .jsonl")


def add_parser(subparsers) -> argparse.ArgumentParser:
    from . import Parser

    p = subparsers.add_parser(
        "traffic", help="detect distillation campaigns in API traffic (simulate, detect, run)",
        description="Traffic-side detection: CoT-elicitation classifier, MinHash template clusters, account "
                    "coordination graph, MMD window test, combined score; thresholds from legitimate traffic only.")
    sub = p.add_subparsers(dest="traffic_command", metavar="ACTION", parser_class=Parser)
    sub.required = True

    s = sub.add_parser("simulate", help="write a simulated log (Parquet) with ground-truth columns")
    s.add_argument("--out", required=True, help="output .parquet file")
    _preset_args(s)
    s.add_argument("--seed", type=SEED, help="simulation seed (default: the preset's)")
    s.add_argument("--legit-accounts", type=POSITIVE, help="legitimate accounts (default: the preset's)")
    s.add_argument("--campaigns", type=COUNT, help="campaigns (default: the preset's)")
    s.set_defaults(func=simulate_cmd)

    d = sub.add_parser("detect", help="score the accounts of a log (yours or simulated)")
    d.add_argument("log", help=LOG_HELP)
    d.add_argument("--reference", help="a log of known-legitimate accounts (same columns), disjoint from LOG: a "
                                       "quarter of its accounts train the models, the rest set the thresholds "
                                       "(default: the preset's simulated legitimate traffic)")
    d.add_argument("--alpha", type=ALPHA, default=1e-3, help="target false-positive rate among legitimate "
                                                             "accounts (default 1e-3)")
    d.add_argument("--out", required=True, help="output folder: accounts.csv, campaigns.csv")
    _preset_args(d)
    d.set_defaults(func=detect_cmd)

    r = sub.add_parser("run", help="simulate, calibrate, detect, evasion curves, report into results/NAME/")
    _preset_args(r)
    r.add_argument("--out", help="results folder (default results/NAME)")
    r.add_argument("--cache-dir", help="where the simulated logs go (default $ANTIDISTILL_CACHE or ~/.cache/antidistill)")
    r.add_argument("--quiet", action="store_true", help="no progress output")
    r.set_defaults(func=run_cmd)
    p.set_defaults(func=lambda args: p.error("choose an action"))
    return p


def _preset_args(p) -> None:
    p.add_argument("--preset", default="traffic", help="traffic (default) or traffic-smoke")
    p.add_argument("--config", help="TOML file merged over its `preset` (see eval/traffic/config.py)")


def simulate_cmd(args) -> int:
    from ..traffic.config import load
    from ..traffic.simulate import SimConfig, simulate
    from ..traffic.store import write_log

    from antidistill.watermark.errors import UserError

    cfg = load(args.config, args.preset)
    sim = dict(cfg["sim"])
    if args.legit_accounts is not None:
        sim["n_legit"] = args.legit_accounts
    if args.campaigns is not None:
        sim["n_campaigns"] = args.campaigns
    if not args.out.endswith(".parquet"):
        raise UserError(f"--out {args.out}: give a .parquet file")
    log = simulate(SimConfig(**sim, seed=cfg["seed"] if args.seed is None else args.seed))
    write_log(log, args.out)
    print(f"{args.out}: {len(log):,} requests, {log['account_id'].nunique():,} accounts "
          f"({int((log.groupby('account_id')['campaign_id'].first() >= 0).sum())} in campaigns)")
    return 0


def detect_cmd(args) -> int:
    import warnings
    from pathlib import Path

    import numpy as np

    from ..traffic import calibrate as C
    from ..traffic.config import load
    from ..traffic.detectors.combined import Suite, campaigns
    from ..traffic.experiment import simulate_logs
    from ..traffic.report import write_csv
    from ..traffic.schema import LABEL_COLUMNS, strip_labels
    from ..traffic.store import connect, read_log

    from antidistill.students.cache import cache_root, ensure_out_dir

    cfg = load(args.config, args.preset)
    log = read_log(args.log)
    if any(c in log.columns for c in LABEL_COLUMNS):
        warnings.warn(f"{args.log}: ground-truth columns {', '.join(c for c in LABEL_COLUMNS if c in log.columns)} "
                      f"are dropped before detection")
    log = strip_labels(log)
    if args.reference:
        ref = strip_labels(read_log(args.reference))
        ids = np.sort(ref["account_id"].unique())
        train_ids = ids[np.random.default_rng(0).permutation(len(ids))[: max(1, len(ids) // 4)]]
        train, calib = ref[ref["account_id"].isin(train_ids)], ref[~ref["account_id"].isin(train_ids)]
    else:
        warnings.warn("no --reference: thresholds come from simulated legitimate users, not from yours")
        work = cache_root() / "traffic" / f"{cfg['name']}-reference"
        ensure_out_dir(work)
        paths = simulate_logs(cfg, work)
        train, calib = (strip_labels(read_log(paths[k])) for k in ("train", "calibration"))
    C.check_legit_only(calib, log["account_id"].unique())
    out = Path(args.out)
    ensure_out_dir(out)
    con = connect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        suite = Suite(cfg["detectors"], seed=cfg["seed"]).fit(train)
        suite.calibrate(calib, con, [args.alpha])
        scores = suite.detect(log, con, args.alpha)
    write_csv(scores, out / "accounts.csv")
    groups = campaigns(scores)
    write_csv(groups, out / "campaigns.csv")
    print(f"{len(scores):,} accounts, {int(scores['flag_combined'].sum()):,} flagged (combined, FPR {args.alpha:g} "
          f"on {len(suite.calib_scores):,} legitimate calibration accounts), {len(groups)} candidate campaigns "
          f"-> {out}/accounts.csv, {out}/campaigns.csv")
    return 0


def run_cmd(args) -> int:
    from ..traffic.config import load
    from ..traffic.experiment import run_traffic

    cfg = load(args.config, args.preset)
    result = run_traffic(cfg, args.out or f"results/{cfg['name']}", cache_dir=args.cache_dir, quiet=args.quiet)
    print(f"{result['out']}/report.md  ({result['meta']['wall_seconds']:.0f} s)")
    return 0
