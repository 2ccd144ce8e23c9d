"""One key, many templated texts: the per-key false-positive rate of per-text verdicts.

    python -m antidistill.eval.bench.templated [--keys 30] [--prompts 1000] [--out results/bench]

An auditor holds one key and tests many texts. Each per-text p-value is exact over the randomness
of the key, but texts of one template share (window, token) tuples, so with a fixed key the false
positives of a family of texts can arrive together. This benchmark measures that directly: the
demo teacher (trained once and cached) answers N distillation prompts without protection, and each
of K fixed keys tests every text on its own, for every scheme, under three rules
(`rules.verdicts`): `per-text+reference`, what the README asks for templated corpora (each text
scored on its own distinct tuples minus those of a held-out corpus of N more raw answers, sampled
with another seed); `per-text` (the default without a reference: every distinct tuple of the
text); and `batch-drop`, the removed rule (tuples another text of the same call scores left out,
so a verdict depended on the call). Per scheme, rule and alpha: the mean false-positive rate over
keys and texts, the worst key's rate, each with an exact (Clopper-Pearson) 95% interval, and how
many keys flag more than 1% of the texts. The interval of the mean treats the K x N verdicts as
independent, which they are not under one key when texts share tuples: the spread over keys is the
honest reading.

The price is power on templated text, where most tuples belong to the template: the benchmark also
samples M protected texts per scheme with a bench key and reports per-text TPR under each rule,
and the pooled verdict, which no rule touches.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from antidistill.watermark import Key, atomic_write, parse_protection

from ..measures.stats import clopper_pearson
from .rules import verdicts

SCHEMES = ("kgw:gamma=0.25,delta=2,h=1,hash=left", "kgw:gamma=0.25,delta=2,h=2,hash=self",
           "unigram:gamma=0.5,delta=2", "gumbel:h=1", "gumbel:h=2", "synthid:depth=16,h=4")
ALPHAS = (1e-3, 1e-2)
RULES = ("per-text+reference", "per-text", "batch-drop")  # see rules.verdicts
BENCH_KEY = Key(b"antidistill templated-text benchmark key (public)")


def null_keys(n: int) -> list[Key]:
    """K fixed keys that never watermarked anything (public, reproducible)."""
    return [Key(f"antidistill templated-bench null key {i}".encode()) for i in range(n)]


def corpus(teacher: str, protection: str, n: int, seed: int, cache_dir, max_new_tokens: int,
           progress: bool) -> tuple[list, list, str]:
    """Sample (or reuse from the cache) a corpus; return (completions, prompts) as token ids and the
    exact teacher it came from (the manifest's name: the demo teacher's recipe hash)."""
    from antidistill.students.cache import cache_root, config_hash
    from antidistill.students.protect.generate import generate_corpus
    from antidistill.students.corpus import read_corpus

    spec = parse_protection(protection).spec
    ident = {"bench": "templated/v1", "teacher": teacher, "protection": spec, "n": n, "seed": seed,
             "max_new_tokens": max_new_tokens, "key": BENCH_KEY.fingerprint}
    out = cache_root(cache_dir) / "bench" / f"templated-{config_hash(ident)}"
    out.parent.mkdir(parents=True, exist_ok=True)
    generate_corpus(teacher, out, protection=spec, key=BENCH_KEY, prompts=n, seed=seed,
                    max_new_tokens=max_new_tokens, batch_size=100, progress=progress, cache_dir=cache_dir)
    c = read_corpus(out)
    return c.sequences, c.prompts, c.manifest["teacher"]


def false_positives(seqs, prompts, n_keys: int, reference) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-key counts of flagged texts (long table) and the per-scheme summary."""
    keys = null_keys(n_keys)
    rows = []
    for spec in SCHEMES:
        prot = parse_protection(spec)
        for rule in RULES:
            for i, key in enumerate(keys):
                lp, n_scored = verdicts(prot.detector(key), seqs, prompts, rule, reference)
                row = {"scheme": spec, "rule": rule, "key": i, "texts": len(lp),
                       "median_n_scored": float(np.median(n_scored))}
                for a in ALPHAS:
                    row[f"flagged@{a:g}"] = int((lp < np.log10(a)).sum())
                rows.append(row)
    per_key = pd.DataFrame(rows)
    summary = []
    for (spec, rule), g in per_key.groupby(["scheme", "rule"], sort=False):
        n = int(g["texts"].iloc[0])
        for a in ALPHAS:
            c = g[f"flagged@{a:g}"].to_numpy()
            lo, hi = clopper_pearson(int(c.sum()), n * len(c))
            worst = int(c.max())
            wlo, whi = clopper_pearson(worst, n)
            summary.append({
                "scheme": spec, "rule": rule, "alpha": a, "n_texts": n, "n_keys": len(c),
                "mean_fpr": c.sum() / (n * len(c)), "mean_ci_lo": lo, "mean_ci_hi": hi,
                "worst_key_fpr": worst / n, "worst_ci_lo": wlo, "worst_ci_hi": whi,
                "keys_over_1pct": int((c / n > 0.01).sum()),
                "median_n_scored": float(g["median_n_scored"].median()),
            })
    return per_key, pd.DataFrame(summary)


def power(teacher: str, n: int, cache_dir, max_new_tokens: int, progress: bool, reference) -> pd.DataFrame:
    """Per-text TPR of protected texts under each rule, and the pooled verdict."""
    rows = []
    for spec in SCHEMES:
        seqs, prompts, _ = corpus(teacher, spec, n, 1, cache_dir, max_new_tokens, progress)
        det = parse_protection(spec).detector(BENCH_KEY)
        pooled = det.detect(seqs, prompts)
        for rule in RULES:
            lp, n_scored = verdicts(det, seqs, prompts, rule, reference)
            row = {"scheme": spec, "rule": rule, "texts": len(lp),
                   "median_n_scored": float(np.median(n_scored)),
                   "pooled_log10_p": pooled.log10_p, "pooled_n_scored": pooled.n_scored}
            for a in ALPHAS:
                row[f"tpr@{a:g}"] = float((lp < np.log10(a)).mean())
            rows.append(row)
    return pd.DataFrame(rows)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _reading(fp: pd.DataFrame, pw: pd.DataFrame, a0: float) -> str:
    """The measured findings in words (computed from the tables, so they never go stale)."""
    at = fp[fp.alpha == a0].set_index(["scheme", "rule"])
    worst = {r: at.xs(r, level="rule").worst_key_fpr for r in RULES}
    over = [f"{s} {_pct(v)}" for s, v in worst["per-text"].items() if v > 0.01]
    tpr = pw.set_index(["scheme", "rule"])[f"tpr@{a0:g}"]

    def span(rule):
        return f"{tpr.xs(rule, level='rule').min():.3f} to {tpr.xs(rule, level='rule').max():.3f}"

    own = pw[pw.rule == "per-text+reference"].median_n_scored
    return (
        f"Reading: with every tuple of a text scored and no reference (`per-text`), the worst of the fixed keys "
        f"flags {_pct(worst['per-text'].min())} to {_pct(worst['per-text'].max())} of the raw texts at alpha = "
        f"{a0:g}" + (f"; above 1% for {', '.join(over)}" if over else "")
        + f". With a held-out reference of raw traces the worst key stays at or below "
        f"{_pct(worst['per-text+reference'].max())} (the removed batch rule: {_pct(worst['batch-drop'].max())}). "
        f"The price is per-text power on these templated traces: with the reference the median protected text "
        f"keeps {own.min():g} to {own.max():g} tuples of its own, and per-text TPR at {a0:g} is "
        f"{span('per-text+reference')} (`per-text`: {span('per-text')}; `batch-drop`: {span('batch-drop')}). "
        "On such text the per-text question has little to go on; the pooled verdict, one test over all texts, "
        "is what an auditor should ask, and no rule touches it. Unigram's tuples are single tokens, nearly all "
        "of which the reference holds: with one fixed green list, per-text unigram evidence on templated text "
        "cannot be told apart from the template's.")


def write_markdown(path: Path, fp: pd.DataFrame, pw: pd.DataFrame, meta: dict) -> None:
    from ..experiment.report import md_table

    a0 = ALPHAS[0]
    default = fp[(fp.rule == "per-text+reference") & (fp.alpha == a0)]
    met = bool(((default.worst_key_fpr <= 0.01) & (default.mean_fpr <= 2 * a0)).all())
    fp_view = fp.assign(
        mean=[f"{_pct(m)} [{_pct(lo)}, {_pct(hi)}]" for m, lo, hi in zip(fp.mean_fpr, fp.mean_ci_lo, fp.mean_ci_hi)],
        worst_key=[f"{_pct(m)} [{_pct(lo)}, {_pct(hi)}]"
                   for m, lo, hi in zip(fp.worst_key_fpr, fp.worst_ci_lo, fp.worst_ci_hi)],
    )[["scheme", "rule", "alpha", "mean", "worst_key", "keys_over_1pct", "median_n_scored"]]
    pw_view = pw.assign(pooled_log10_p=pw.pooled_log10_p.round(1))[
        ["scheme", "rule", "texts", "median_n_scored", f"tpr@{ALPHAS[0]:g}", f"tpr@{ALPHAS[1]:g}",
         "pooled_log10_p", "pooled_n_scored"]]
    lines = [
        "# One key, many templated texts: per-key false positives of per-text verdicts", "",
        f"`{meta['command']}`: {meta['texts']} raw answers of teacher `{meta['teacher_id']}` to task-suite "
        f"distillation prompts (T = 1, "
        f"{meta['max_new_tokens']} new tokens) tested text by text with {meta['keys']} fixed keys per scheme; "
        f"{meta['power_texts']} protected traces per scheme for power; {meta['reference_texts']} more raw answers "
        f"(another seed) as the held-out reference. {meta['wall_seconds']:.0f} s on "
        f"{meta['machine']} ({meta['note']}).", "",
        "`per-text+reference` is what the README asks for templated corpora (`detect --reference-texts`): a text "
        "is scored on its own distinct tuples minus those the reference contains. `per-text` is the default "
        "without a reference (every distinct tuple of the text). `batch-drop` is the removed rule (tuples another "
        "text of the same call scores left out: a verdict depended on the call).", "",
        f"**Target** (issues 8, 18): with a reference, every scheme's worst key at alpha = {a0:g} flags at most 1% "
        f"of the texts and the mean is at most 2 alpha: **{'met' if met else 'NOT met'}**.", "",
        "## False positives (raw text, fixed keys)", "",
        "Mean over keys and texts and the worst key, each with its exact 95% interval. The interval of the mean "
        "assumes independent verdicts, which texts sharing tuples are not under one key.", "",
        md_table(fp_view), "",
        "## What the rule costs: per-text power on protected traces (bench key)", "",
        md_table(pw_view), "",
        _reading(fp, pw, a0),
    ]
    with atomic_write(path) as fh:
        fh.write("\n".join(lines) + "\n")


def run(out: Path, *, n_keys: int, n_texts: int, n_power: int, teacher: str, max_new_tokens: int,
        cache_dir=None, progress: bool = True, note: str = "") -> dict:
    t0 = time.perf_counter()
    seqs, prompts, teacher_id = corpus(teacher, "none", n_texts, 0, cache_dir, max_new_tokens, progress)
    reference = corpus(teacher, "none", n_texts, 2, cache_dir, max_new_tokens, progress)[:2]  # held out
    per_key, fp = false_positives(seqs, prompts, n_keys, reference)
    pw = power(teacher, n_power, cache_dir, max_new_tokens, progress, reference)
    command = (f"python -m antidistill.eval.bench.templated --keys {n_keys} --prompts {n_texts} "
               f"--power-prompts {n_power} --teacher {teacher} --max-new-tokens {max_new_tokens}")
    meta = {"command": command, "keys": n_keys, "texts": len(seqs), "power_texts": n_power,
            "reference_texts": len(reference[0]),
            "teacher": teacher, "teacher_id": teacher_id, "max_new_tokens": max_new_tokens,
            "wall_seconds": round(time.perf_counter() - t0, 1), "machine": f"{platform.machine()} "
            f"{platform.system()}, {__import__('os').cpu_count()} CPUs", "note": note or "no note"}
    out.mkdir(parents=True, exist_ok=True)
    for name, df in (("templated.csv", fp), ("templated_per_key.csv", per_key), ("templated_power.csv", pw)):
        with atomic_write(out / name) as fh:
            df.to_csv(fh, index=False)
    with atomic_write(out / "templated.json") as fh:
        json.dump(meta, fh, indent=2)
    write_markdown(out / "templated.md", fp, pw, meta)
    return {"false_positives": fp, "per_key": per_key, "power": pw, "meta": meta}


def main(argv: list[str] | None = None) -> int:
    from antidistill.watermark.errors import UserError

    from ..cli import Parser
    from ..cli.options import POSITIVE

    argv = sys.argv[1:] if argv is None else argv
    ap = Parser(prog="python -m antidistill.eval.bench.templated", description=__doc__.split("\n")[0])
    ap.add_argument("--keys", type=POSITIVE, default=30, help="fixed null keys per scheme (default 30)")
    ap.add_argument("--prompts", type=POSITIVE, default=1000, help="raw texts tested per key (default 1000)")
    ap.add_argument("--power-prompts", type=POSITIVE, default=300, help="protected texts per scheme (default 300)")
    ap.add_argument("--teacher", default="demo", help="teacher to sample (default: the demo teacher)")
    ap.add_argument("--max-new-tokens", type=POSITIVE, default=128)
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--cache-dir")
    ap.add_argument("--note", default="", help="a line about the machine's load, kept with the results")
    ap.add_argument("--quiet", action="store_true")
    try:
        args = ap.parse_args(argv)
    except SystemExit as stop:  # the one-line argument error has been printed
        return int(stop.code or 0)
    from ..experiment.runner import library_chatter

    try:
        with library_chatter(verbose=False):
            res = run(Path(args.out), n_keys=args.keys, n_texts=args.prompts, n_power=args.power_prompts,
                      teacher=args.teacher, max_new_tokens=args.max_new_tokens, cache_dir=args.cache_dir,
                      progress=not args.quiet, note=args.note)
    except UserError as err:
        print(f"bench.templated: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.out}/templated.md ({res['meta']['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
