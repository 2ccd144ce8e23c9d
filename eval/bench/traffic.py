"""Throughput of the traffic side on one core: simulator, streaming features (DuckDB SQL), batch graph.

    python -m antidistill.eval.bench.traffic [--legit-accounts 30000] [--repeats 3] [--out results/bench]

Simulates a log of about 10^6 requests from >= 10^4 accounts, writes it as Parquet, and times (median
of --repeats) each columnar feature of eval/traffic/features.py read straight from the Parquet file
by DuckDB on one thread: requests per second per core (the issue's target is >= 10^5). The batch
graph is timed once: co-action and shared-attribute edges, the networkx graph, Louvain communities.
The per-request text features are timed too, on --text-requests requests of the log (each distinct
prompt computed once, as in detection): the CoT classifier's probability, MinHash signatures, the
MMD embedding; models fitted on 500 legitimate accounts of another seed.

False-positive rate: per seed (--null-seeds), an all-legitimate log of --null-accounts accounts split
in two by account, one half the reference, the other evaluated (eval/traffic/null_split.py): flags per
detector and alpha with the exact 95% interval and the 99.9% bounds, beside the nominal alpha.
"""
from __future__ import annotations

import json
import platform
import warnings
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from antidistill.watermark.errors import atomic_write

from ..cli import Parser
from ..cli.options import POSITIVE, SEED
from ..traffic.detectors.coordination import coordination_scores
from ..traffic.features import ACCOUNT_SQL, COACTION_SQL, SHARED_SQL
from ..traffic.null_split import markdown as null_markdown, null_table
from ..traffic.schema import strip_labels
from ..traffic.simulate import SimConfig, simulate
from ..traffic.store import connect, write_log

FEATURES = {"account aggregates (ACCOUNT_SQL)": ACCOUNT_SQL,
            "co-action pairs, 60 s buckets (COACTION_SQL)": COACTION_SQL.format(window=60.0, min_co=3),
            "shared payment pairs (SHARED_SQL)": SHARED_SQL.format(col="payment_id", max_share=200),
            "shared network pairs (SHARED_SQL)": SHARED_SQL.format(col="network", max_share=200)}


def text_features(log: pd.DataFrame, args) -> list[dict]:
    """Requests per second of the per-request text features, on a slice of the log."""
    import warnings

    from ..traffic.detectors.cot import CotClassifier
    from ..traffic.detectors.shift import ShiftTest
    from ..traffic.detectors.templates import shingles, signatures

    train = simulate(SimConfig(seed=args.seed + 1, prefix="t", n_legit=500, n_campaigns=0))["prompt"].to_numpy()
    sl = log["prompt"].to_numpy()[: args.text_requests]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf, emb = CotClassifier().fit(train), ShiftTest().fit(train)
    uniq = pd.unique(sl)
    rows = []
    for name, fn in (("CoT classifier probability (TF-IDF + logistic regression)", lambda: clf.model.predict_proba(uniq)),
                     ("MinHash signatures (word 3-shingles, 64 permutations)",
                      lambda: signatures([shingles(p) for p in uniq])),
                     ("MMD embedding (TF-IDF + SVD)", lambda: emb._embed(uniq))):
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        rows.append({"stage": f"{name}, {len(sl):,} requests / {len(uniq):,} distinct", "seconds": round(dt, 2),
                     "requests_per_s": round(len(sl) / dt)})
    return rows


def main(argv=None) -> int:
    p = Parser(prog="python -m antidistill.eval.bench.traffic", description=__doc__.split("\n\n")[0])
    p.add_argument("--legit-accounts", type=POSITIVE, default=30000)
    p.add_argument("--campaigns", type=POSITIVE, default=20)
    p.add_argument("--repeats", type=POSITIVE, default=3)
    p.add_argument("--text-requests", type=POSITIVE, default=50_000)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--null-accounts", type=POSITIVE, default=2400, help="accounts of the all-legitimate log")
    p.add_argument("--null-seeds", default="0,1,2", help="comma-separated seeds of the all-legitimate split")
    p.add_argument("--out", default="results/bench")
    args = p.parse_args(argv)
    try:
        null_seeds = [SEED(x) for x in args.null_seeds.split(",")]
    except Exception:
        p.error(f"argument --null-seeds: must be comma-separated integers, got {args.null_seeds!r}")
    if args.null_accounts < 40:
        p.error("argument --null-accounts: must be >= 40")
    cfg = SimConfig(seed=args.seed, n_legit=args.legit_accounts, n_campaigns=args.campaigns)
    t = time.perf_counter()
    log = simulate(cfg)
    t_sim = time.perf_counter() - t
    rows = [{"stage": "simulate", "seconds": round(t_sim, 2), "requests_per_s": round(len(log) / t_sim)}]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.parquet"
        t = time.perf_counter()
        write_log(strip_labels(log), path)
        t_w = time.perf_counter() - t
        rows.append({"stage": "write Parquet", "seconds": round(t_w, 2), "requests_per_s": round(len(log) / t_w)})
        con = connect(threads=1)
        con.execute(f"CREATE VIEW log AS SELECT * FROM read_parquet('{path}')")
        for name, sql in FEATURES.items():
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                con.execute(sql).fetchall()
                times.append(time.perf_counter() - t)
            med = statistics.median(times)
            rows.append({"stage": name, "seconds": round(med, 3), "requests_per_s": round(len(log) / med)})
        con.close()
        con = connect(threads=1)
        t = time.perf_counter()
        g = coordination_scores(strip_labels(log)[["request_id", "account_id", "timestamp", "payment_id", "network"]],
                                con)
        t_g = time.perf_counter() - t
        rows.append({"stage": f"batch graph: edges + networkx + Louvain ({len(g.attrs['edges']):,} links)",
                     "seconds": round(t_g, 2), "requests_per_s": round(len(log) / t_g)})
    rows += text_features(log, args)
    table = pd.DataFrame(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = args.null_accounts // 2
        alphas = [a for a in (1e-2, 5e-2) if a >= 1 / (half - max(1, half // 4) + 1)]
        null = null_table(null_seeds, args.null_accounts, alphas)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"requests": len(log), "accounts": int(log["account_id"].nunique()), "repeats": args.repeats,
            "threads": 1, "python": platform.python_version(), "platform": platform.platform(),
            "cpu": platform.processor() or "unknown", "config": cfg.as_dict()}
    md = ["# Traffic-side throughput (one core)", "",
          f"`python -m antidistill.eval.bench.traffic {' '.join(argv if argv is not None else sys.argv[1:])}`: "
          f"{meta['requests']:,} simulated requests from {meta['accounts']:,} accounts; DuckDB on one thread "
          f"reading the Parquet file; SQL feature times are medians of {args.repeats} runs, the graph and the "
          f"text features (first {args.text_requests:,} requests, each distinct prompt once) are timed once. "
          "Measured on the shared 2-core development machine while other jobs ran: read ratios, not absolutes.",
          "", "## Figures", "", "| stage | seconds | requests/s |", "|---|---|---|"]
    md += [f"| {r.stage} | {r.seconds:g} | {r.requests_per_s:,} |" for r in table.itertuples()]
    md += ["", "## False-positive rate on an all-legitimate split", "",
           f"Per seed, a simulated log of {args.null_accounts:,} legitimate accounts (no campaign) split in two at "
           "random by account: one half is the reference (a quarter trains the models, the rest calibrates), the "
           "other half is evaluated, so every flag is a false positive (eval/traffic/null_split.py). Achieved FPR "
           "with its exact 95% Clopper-Pearson interval beside the nominal alpha, and two 99.9% upper bounds on "
           "the count: Binomial(N, alpha) and the exact law under exchangeability (negative hypergeometric).", "",
           null_markdown(null)]
    with atomic_write(out / "traffic.md") as fh:
        fh.write("\n".join(md) + "\n")
    with atomic_write(out / "traffic.json") as fh:
        json.dump({"meta": meta, "rows": rows, "null_split": null.to_dict("records")}, fh, indent=2,
                  default=lambda v: v.item() if hasattr(v, "item") else str(v))  # numpy scalars
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
