"""`antidistill audit`: was a suspect model trained on our protected outputs? (radioactivity test)"""
from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

from .options import ALPHA, POSITIVE, SEED, integer, real


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "audit", help="test a suspect model for radioactivity (trained on our protected outputs?)",
        description="Collect (context, token) tuples from SUSPECT -- its predictions on our protected texts "
                    "(reading mode, open weights: its top-1 tokens, or with --reference the tokens it prefers most "
                    "over our unprotected teacher) or its own samples on prompts (generation mode, black box) -- "
                    "and test them against the key with a deduplicated binomial or Gamma tail (exact; conservative "
                    "in reading mode for h = 0). Prints RADIOACTIVE or NOT DETECTED at alpha; writes audit.json, "
                    "audit_curve.csv and audit_curve.png to --out.")
    p.add_argument("--suspect", required=True, help="model folder, preset, 'demo' or hub id")
    p.add_argument("--protection", required=True, help="protection spec of our outputs, e.g. kgw:h=1")
    p.add_argument("--key-file", help="file with the secret key (default: $ANTIDISTILL_KEY)")
    p.add_argument("--texts", metavar="CORPUS_DIR",
                   help="our protected corpus (reading mode: the texts to teacher-force; with --filter-top: phi)")
    p.add_argument("--prompts", help="generation mode: N (task-suite prompts) or a .jsonl/.txt file "
                                     "(default: the prompts of --texts)")
    p.add_argument("--mode", choices=("reading", "generation"), default="reading")
    p.add_argument("--alpha", type=ALPHA, default=1e-3, help="significance level of the verdict (default 1e-3)")
    p.add_argument("--max-tuples", type=POSITIVE, metavar="N", help="score at most N distinct tuples")
    p.add_argument("--max-texts", type=POSITIVE, metavar="N", help="use at most N texts / prompts")
    p.add_argument("--filter-top", type=POSITIVE, metavar="K",
                   help="filter phi: score only tuples among the K most frequent (h+1)-grams of --texts")
    p.add_argument("--reference", metavar="MODEL",
                   help="our unprotected teacher: score only choice points, where its top-1 probability is below "
                        "--max-reference-prob (forced tokens carry no watermark), and in reading mode pick the "
                        "suspect's contrast choice against it (see --selection)")
    p.add_argument("--max-reference-prob", type=real(0, 1, lo_open=True), default=0.5, metavar="P",
                   help="choice-point threshold with --reference (default 0.5)")
    p.add_argument("--selection", choices=("top1", "contrast"),
                   help="reading mode: score the suspect's top-1 token, or the token it prefers most over "
                        "--reference (default: contrast with --reference, else top1)")
    p.add_argument("--null-keys", type=integer(0, 1000), default=0, metavar="N",
                   help="also score the same tuples with N wrong keys (null controls)")
    p.add_argument("--no-dedup", action="store_true", help="score repeated tuples again (p-values invalid)")
    p.add_argument("--max-new-tokens", type=POSITIVE, default=128, help="generation mode")
    p.add_argument("--temperature", type=real(0, 100), default=1.0,
                   help="generation mode: sampling temperature of the suspect (default 1); 0 decodes greedily")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--out", default="antidistill-audit", help="folder for the evidence (default ./antidistill-audit)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from antidistill.students.cache import ensure_out_dir
    from antidistill.students.tasks.prompts import load_prompts
    from antidistill.students.corpus import mismatches, read_corpus
    from antidistill.students.models.loader import load_model
    from antidistill.students.batching import encode_prompts
    from antidistill.students.models.tokenizer import tokenizer_fingerprint
    from antidistill.watermark import load_key, parse_protection
    from antidistill.watermark.errors import UserError, atomic_write

    from ..measures.audit import summary_line
    from ..measures.suspect import TupleCollection, score_keys, suspect_tuples
    from ..experiment.plots import radioactivity_curves

    protection = parse_protection(args.protection)
    if not protection.has_detector:
        raise UserError(f"protection {protection.spec!r} leaves no detectable trace; audit needs a watermark "
                        "scheme (kgw, unigram, gumbel, synthid)")
    if args.mode == "reading" and not args.texts:
        raise UserError("reading mode needs --texts CORPUS_DIR (our protected outputs to teacher-force); "
                        "or use --mode generation --prompts N|FILE")
    if args.mode == "generation" and not (args.prompts or args.texts):
        raise UserError("generation mode needs --prompts N|FILE (or --texts, whose prompts are then used)")
    if args.filter_top and not args.texts:
        raise UserError("--filter-top needs --texts CORPUS_DIR (the protected corpus its k-grams come from)")
    selection = args.selection or ("contrast" if args.reference else "top1")
    if selection == "contrast" and not args.reference:
        raise UserError("--selection contrast needs --reference MODEL (our unprotected teacher)")
    how = TupleCollection(mode=args.mode, selection=selection,
                          max_reference_prob=args.max_reference_prob if args.reference else None,
                          temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=args.seed,
                          max_texts=args.max_texts, filter_top=args.filter_top)
    key = load_key(args.key_file)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder; give a folder for the evidence")

    corpus = read_corpus(args.texts) if args.texts else None
    model, tokenizer = load_model(args.suspect, seed=args.seed)
    if corpus is not None:
        fp = corpus.manifest.get("tokenizer_fingerprint")
        if fp and fp != tokenizer_fingerprint(tokenizer):
            raise UserError(f"corpus {args.texts} was tokenized with tokenizer {fp} but suspect {args.suspect!r} "
                            f"uses {tokenizer_fingerprint(tokenizer)}; the audit needs the same token ids")
        differs = mismatches(corpus.manifest, protection=protection, key=key)
        if differs:
            warnings.warn(f"--texts {args.texts} were generated with {differs}; auditing as asked")
    ref = None
    if args.reference:
        ref, ref_tok = load_model(args.reference, seed=args.seed)
        if tokenizer_fingerprint(ref_tok) != tokenizer_fingerprint(tokenizer):
            raise UserError(f"--reference {args.reference!r} uses another tokenizer than the suspect; the choice-point "
                            "filter needs the same token ids")
    prompt_ids = None
    if args.mode == "generation" and args.prompts:
        recs, _ = load_prompts(args.prompts, seed=args.seed, chat=bool(getattr(tokenizer, "chat_template", None)))
        prompt_ids = encode_prompts(tokenizer, [r["prompt"] for r in recs])
    tuples, keep = suspect_tuples(model, tokenizer, protection.detector(key).h, how,
                                  records=corpus.records if corpus is not None else None, prompt_ids=prompt_ids,
                                  reference=ref)
    result, *nulls = score_keys(protection, key, tuples, keep=keep, n_wrong=args.null_keys, mode=args.mode,
                                dedup=not args.no_dedup, max_tuples=args.max_tuples)

    verdict = result.verdict(args.alpha)
    evidence = {
        "verdict": verdict, "alpha": args.alpha, "suspect": args.suspect, "protection": protection.spec,
        "mode": args.mode, "selection": selection if args.mode == "reading" else None, "n_texts": result.n_texts,
        "texts": args.texts, "prompts": args.prompts,
        "filter_top": args.filter_top, "max_tuples": args.max_tuples, "reference": args.reference,
        "max_reference_prob": args.max_reference_prob if args.reference else None, "detection": result.detection.as_dict(),
        "null_keys": [{"key_fingerprint": n.detection.key_fingerprint, "log10_p": n.detection.log10_p,
                       "n_scored": n.detection.n_scored, "verdict": n.verdict(args.alpha)} for n in nulls],
    }
    curves = [result.curve.assign(label=f"suspect, key {key.fingerprint[:8]}", kind="suspect")]
    curves += [n.curve.assign(label=f"wrong key {n.detection.key_fingerprint[:8]}", kind="null") for n in nulls]

    import pandas as pd

    table = pd.concat(curves, ignore_index=True)
    ensure_out_dir(out)  # only now: a refused audit leaves no empty folder behind
    with atomic_write(out / "audit.json") as fh:
        json.dump(evidence, fh, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v)
        fh.write("\n")
    with atomic_write(out / "audit_curve.csv") as fh:
        table.to_csv(fh, index=False)
    if len(table):
        radioactivity_curves(table, out / "audit_curve.png", args.alpha, title=f"Audit of {Path(args.suspect).name}")
    print(summary_line(result, args.alpha))
    for n in nulls:
        print(f"  null control, wrong key {n.detection.key_fingerprint}: log10 p = {n.detection.log10_p:.2f} "
              f"({n.verdict(args.alpha)})")
    return 0
