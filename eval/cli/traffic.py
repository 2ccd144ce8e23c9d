"""`antidistill traffic simulate | detect | run`: distillation campaigns in API traffic."""
from __future__ import annotations

import argparse
import os

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
                                                             "accounts (default 1e-3; at least 1/(n+1), n the "
                                                             "calibration accounts)")
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
    from ..traffic.simulate import simulate
    from ..traffic.store import write_log

    from antidistill.watermark.errors import UserError

    cfg = load(args.config, args.preset)
    changes = {"seed": cfg.seed if args.seed is None else args.seed}
    if args.legit_accounts is not None:
        changes["n_legit"] = args.legit_accounts
    if args.campaigns is not None:
        changes["n_campaigns"] = args.campaigns
    if not args.out.endswith(".parquet"):
        raise UserError(f"--out {args.out}: give a .parquet file")
    try:  # bounds before any allocation
        sc = cfg.sim_config(**changes).check()
    except UserError as err:
        msg = str(err)
        for flag, name in (("--legit-accounts", "n_legit"), ("--campaigns", "n_campaigns")):
            msg = msg.replace(f"setting {name} ", f"setting {name} ({flag}) ")
        raise UserError(msg) from None
    _check_outputs([args.out])
    log = simulate(sc)
    write_log(log, args.out)
    print(f"{args.out}: {len(log):,} requests, {log['account_id'].nunique():,} accounts "
          f"({int((log.groupby('account_id')['campaign_id'].first() >= 0).sum())} in campaigns)")
    return 0


MIN_REFERENCE_ACCOUNTS = 40  # a quarter trains the models; the rest must leave a calibration set worth the name


def _check_outputs(paths) -> None:
    """Every output path writable as a regular file, checked before any work or any write."""
    from pathlib import Path

    from antidistill.watermark.errors import UserError, check_replaceable

    for path in paths:
        check_replaceable(path)
        parent = Path(path).parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise UserError(f"cannot write {path}: {parent} is not a folder")
        if not os.access(parent, os.W_OK):
            raise UserError(f"cannot write {path}: {parent} is not writable; choose another --out")


def detect_cmd(args) -> int:
    import contextlib
    import warnings
    from pathlib import Path

    from ..traffic import calibrate as C
    from ..traffic.config import load
    from ..traffic.detectors.combined import Suite, campaigns
    from ..core.config import as_dict
    from ..traffic.experiment import simulated_logs, traffic_store
    from ..traffic.schema import LABEL_COLUMNS, strip_labels
    from ..traffic.store import connect, read_log

    from antidistill.students.cache import ensure_out_dir
    from antidistill.watermark.errors import UserError, atomic_write

    cfg = load(args.config, args.preset)
    out = Path(args.out)
    targets = {"accounts": out / "accounts.csv", "campaigns": out / "campaigns.csv"}
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    _check_outputs(targets.values())
    log = read_log(args.log)
    if any(c in log.columns for c in LABEL_COLUMNS):
        warnings.warn(f"{args.log}: ground-truth columns {', '.join(c for c in LABEL_COLUMNS if c in log.columns)} "
                      f"are dropped before detection")
    accounts = log["account_id"].unique()
    if args.reference:
        ref = read_log(args.reference)
        # labels are checked before they are stripped, and against every part of the reference
        C.check_legit_only(ref, accounts, where=f"--reference {args.reference}")
        n_ref = ref["account_id"].nunique()
        if n_ref < MIN_REFERENCE_ACCOUNTS:
            raise UserError(f"--reference {args.reference} holds {n_ref} account(s); it needs at least "
                            f"{MIN_REFERENCE_ACCOUNTS} (a quarter train the models, the rest calibrate)")
        train, calib = C.split_reference(strip_labels(ref))
        C.check_alpha(args.alpha, calib["account_id"].nunique())
        lo, hi = log["timestamp"].min(), log["timestamp"].max()
        if ref["timestamp"].max() < lo or ref["timestamp"].min() > hi:
            warnings.warn(f"--reference {args.reference} does not overlap the log's time span: calibration accounts "
                          f"and evaluated accounts then meet different populations (co-action, templates)")
    else:
        C.check_alpha(args.alpha, cfg.calibration_accounts)
        warnings.warn("no --reference: thresholds come from simulated legitimate users, not from yours")
        paths = simulated_logs(cfg, traffic_store())  # the preset's logs, shared with `traffic run`
        train, calib = (read_log(paths[k]) for k in ("train", "calibration"))
        for part in (train, calib):
            C.check_legit_only(part, accounts, where="the simulated reference")
        train, calib = strip_labels(train), strip_labels(calib)
    log = strip_labels(log)
    con = connect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        suite = Suite(as_dict(cfg.detectors), seed=cfg.seed).fit(train)
        n_calib = suite.calibrate(calib, con)
        scores = suite.detect(log, con, args.alpha)
    groups = campaigns(scores)
    _check_outputs(targets.values())  # again: the folder may have changed during the work
    ensure_out_dir(out)
    with contextlib.ExitStack() as stack:  # both files complete before either replaces anything
        fhs = {k: stack.enter_context(atomic_write(p)) for k, p in targets.items()}
        scores.to_csv(fhs["accounts"], index=False, float_format="%.6g")
        groups.to_csv(fhs["campaigns"], index=False, float_format="%.6g")
    print(f"{len(scores):,} accounts, {int(scores['flag_combined'].sum()):,} flagged (combined, conformal p <= "
          f"{args.alpha:g} on {n_calib:,} legitimate calibration accounts), {len(groups)} candidate campaigns "
          f"-> {targets['accounts']}, {targets['campaigns']}")
    return 0


def run_cmd(args) -> int:
    from ..traffic.config import load
    from ..traffic.experiment import run_traffic

    cfg = load(args.config, args.preset)
    result = run_traffic(cfg, args.out or f"results/{cfg.name}", cache_dir=args.cache_dir, quiet=args.quiet)
    print(f"{result['out']}/report.md  ({result['meta']['wall_seconds']:.0f} s)")
    return 0
