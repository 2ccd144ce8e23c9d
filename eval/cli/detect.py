"""`antidistill detect`: score texts (JSONL or a corpus folder) for a watermark, one verdict each."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from antidistill.watermark import UserError, atomic_write, load_key, parse_protection
from antidistill.watermark.errors import check_replaceable, check_text, read_json_objects

from .options import ALPHA, POSITIVE, real

DEFAULT_MAX_REFERENCE_PROB = 0.9


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "detect", help="test texts for a watermark (exact p-values)",
        description="Score each input for the protection's watermark. INPUT is a JSONL file (one object per "
                    "line with `token_ids` or `text`, optional `id` and `prompt_ids`) or a corpus folder "
                    "written by `antidistill generate`.")
    p.add_argument("input", metavar="INPUT", help="JSONL file or corpus folder")
    p.add_argument("--protection", required=True, metavar="SPEC", help="e.g. kgw:gamma=0.25,delta=2,h=1,hash=left")
    p.add_argument("--key-file", metavar="KEY", help="secret key file (default: $ANTIDISTILL_KEY)")
    p.add_argument("--tokenizer", metavar="PATH_OR_ID", help="tokenizer for lines that carry `text`")
    p.add_argument("--out", metavar="OUT.jsonl", help="write per-input verdicts here (default: stdout)")
    p.add_argument("--alpha", type=ALPHA, default=1e-3, help="significance level (default 1e-3)")
    p.add_argument("--pooled", action="store_true", help="add one verdict pooled over all inputs (dedup across them)")
    p.add_argument("--no-dedup", action="store_true",
                   help="score repeated (window, token) tuples again (p-values then invalid; warns)")
    p.add_argument("--exclude-prompt-windows", action="store_true",
                   help="skip tuples whose window also occurs in the prompt")
    p.add_argument("--reference-texts", metavar="PATH",
                   help="unprotected texts of the same kind (JSONL or corpus folder): per-input verdicts skip "
                        "tuples that occur in them, so a text is judged only on what is its own (needed for "
                        "templated texts; a verdict never depends on the other inputs)")
    p.add_argument("--recurring-min", type=POSITIVE, metavar="M",
                   help="family guard: a tuple recurs when at least M other inputs score it (default: 5%% of "
                        "the other inputs, at least 1); reported per input and pooled, no p-value changes")
    p.add_argument("--reference", metavar="MODEL",
                   help="an unprotected model with the texts' tokenizer ('demo', a folder, a preset or 'smollm2'): "
                        "score only choice points, where it is unsure of the next token (SWEET); it reads the "
                        "prefix only, so p-values stay exact")
    p.add_argument("--max-reference-prob", type=real(0, 1, lo_open=True), metavar="P",
                   help="with --reference: keep positions whose reference top-1 probability is below P "
                        "(default 0.9 unless --min-reference-entropy is given)")
    p.add_argument("--min-reference-entropy", type=real(0), metavar="H",
                   help="with --reference: keep positions whose reference entropy is at least H nats "
                        "(with --max-reference-prob: either suffices)")
    p.add_argument("--entropy-weight", action="store_true",
                   help="with --reference: weight each kept position by the reference entropy (EWD); "
                        "the p-value is then a Chernoff bound (never understated), not exact")
    p.add_argument("--count-repeats", action="store_true",
                   help="score each distinct tuple once (dedup) but weight it by how many scored positions use "
                        "it: templated texts repeat their choices, and the weighted test (exact for kgw, unigram, "
                        "synthid; a Chernoff bound for gumbel) stays valid because the counts depend on the text only")
    p.add_argument("--batch-size", type=POSITIVE, default=16, help="reference forward batch size (default 16)")
    p.set_defaults(func=run)


def _load_tokenizer(name: str | None):
    if name is None:
        return None
    from transformers import AutoTokenizer

    from antidistill.students.models.folders import resolve_model_dir
    try:
        tok = AutoTokenizer.from_pretrained(str(resolve_model_dir(name)))
    except Exception as err:  # any loading failure is the user's path/id
        raise UserError(f"cannot load tokenizer {name!r}: {str(err).splitlines()[0]}") from None
    if tok.pad_token is None:  # as load_model does, so tokenizer fingerprints compare with manifests'
        tok.pad_token = tok.eos_token
    return tok


def _ids(value, where: str, field: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                              for t in value):
        raise UserError(f"{where}: `{field}` must be a list of non-negative integers")
    return value


def read_jsonl(path: Path, tokenizer) -> list[dict]:
    records = []
    vocab = len(tokenizer) if tokenizer is not None else None
    for n, where, obj in read_json_objects(path, "input"):
        if "token_ids" in obj:
            ids = _ids(obj["token_ids"], where, "token_ids")
        elif "text" in obj:
            if tokenizer is None:
                raise UserError(f"{where}: has `text` but no --tokenizer was given to turn it into token ids")
            if not isinstance(obj["text"], str):
                raise UserError(f"{where}: `text` must be a string")
            ids = tokenizer(check_text(obj["text"], where, "text"), add_special_tokens=False)["input_ids"]
        else:
            raise UserError(f"{where}: needs `token_ids` (list of ints) or `text`")
        prompt = _ids(obj["prompt_ids"], where, "prompt_ids") if "prompt_ids" in obj else []
        top = max(ids + prompt, default=-1)
        if vocab is not None and top >= vocab:
            raise UserError(f"{where}: token id {top} is outside the vocabulary of --tokenizer ({vocab} tokens)")
        records.append({"id": obj.get("id", n), "token_ids": ids, "prompt_ids": prompt})
    return records


def read_input(path: Path, tokenizer, protection=None, key=None) -> list[dict]:
    if path.is_dir():
        import warnings

        from antidistill.students.corpus import mismatches, read_corpus
        from antidistill.students.models.tokenizer import tokenizer_fingerprint

        corpus = read_corpus(path)  # checks every id against the manifest's vocabulary
        differs = mismatches(corpus.manifest, protection=protection, key=key,
                             tokenizer_fp=tokenizer_fingerprint(tokenizer) if tokenizer is not None else None)
        if differs:
            warnings.warn(f"corpus {path} was generated with {differs}; testing as asked")
        return [{"id": r["id"], "token_ids": r["completion_ids"], "prompt_ids": r["prompt_ids"]}
                for r in corpus.records]
    if not path.exists():
        raise UserError(f"input {path} does not exist; give a JSONL file or a corpus folder")
    return read_jsonl(path, tokenizer)


def reference_filter(args, seqs, prompts, h: int) -> tuple[dict, str]:
    """keep / weights keyword arguments for the detector from --reference (empty without it), and
    a description of the rule."""
    if args.reference is None:
        for flag in ("max_reference_prob", "min_reference_entropy"):
            if getattr(args, flag) is not None:
                raise UserError(f"--{flag.replace('_', '-')} needs --reference MODEL")
        if args.entropy_weight:
            raise UserError("--entropy-weight needs --reference MODEL")
        return {}, ""
    from antidistill.students.models.loader import load_model
    from antidistill.watermark.entropy import ChoiceRule, choice_points

    if args.batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    max_top1 = args.max_reference_prob
    if max_top1 is None and args.min_reference_entropy is None:
        max_top1 = DEFAULT_MAX_REFERENCE_PROB
    rule = ChoiceRule(max_top1=max_top1, min_entropy=args.min_reference_entropy, weighted=args.entropy_weight)
    model, _ = load_model(args.reference)
    keep, weights = choice_points(model, seqs, prompts, h, rule, batch_size=args.batch_size)
    return {"keep": keep, "weights": weights}, f"{rule.describe()}, {int(keep.sum())}/{len(keep)} positions kept"


def run(args) -> int:
    protection = parse_protection(args.protection)
    key = load_key(args.key_file)
    detector = protection.detector(key)
    if args.out:
        check_replaceable(Path(args.out))
    tokenizer = _load_tokenizer(args.tokenizer)
    records = read_input(Path(args.input), tokenizer, protection, key)
    if not records:
        raise UserError(f"input {args.input} holds no records")
    log_alpha = math.log10(args.alpha)
    dedup = not args.no_dedup
    seqs = [r["token_ids"] for r in records]
    prompts = [r["prompt_ids"] for r in records]
    reference = reference_prompts = None
    if args.reference_texts:
        ref_path = Path(args.reference_texts)
        if not ref_path.exists():
            raise UserError(f"--reference-texts {ref_path} does not exist; give a JSONL file or a corpus folder")
        ref = read_input(ref_path, tokenizer)
        if not ref:
            raise UserError(f"--reference-texts {ref_path} holds no records")
        reference, reference_prompts = [r["token_ids"] for r in ref], [r["prompt_ids"] for r in ref]
    filt, rule = reference_filter(args, seqs, prompts, protection.context_width)
    if args.count_repeats and not dedup:
        raise UserError("--count-repeats weights each distinct tuple by its repeats; it needs dedup (drop --no-dedup)")
    filt["count_repeats"] = args.count_repeats
    refs = {"reference": reference, "reference_prompts": reference_prompts}
    verdicts = detector.detect_each(seqs, prompts, dedup=dedup, exclude_prompt_windows=args.exclude_prompt_windows,
                                    **refs, **filt)
    # the family guard reads the inputs together; it is reported beside the verdicts, never in them
    family = detector.family(seqs, prompts, m=args.recurring_min, exclude_prompt_windows=args.exclude_prompt_windows,
                             keep=filt.get("keep"), **refs)
    lines = []
    for rec, d, n_rec in zip(records, verdicts, family.recurring):
        lines.append({"id": rec["id"], "n_scored": d.n_scored, "n_reference": d.n_reference,
                      "statistic": d.statistic, "z": d.z, "log10_p": d.log10_p, "p_value": d.p_value,
                      "watermarked": d.log10_p < log_alpha, "n_recurring": int(n_rec)})
    pooled = None
    if args.pooled:
        pooled = detector.detect(seqs, prompts, dedup=dedup, exclude_prompt_windows=args.exclude_prompt_windows,
                                 **filt)
    text = "".join(json.dumps(line) + "\n" for line in lines)
    if args.out:
        with atomic_write(Path(args.out)) as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    n_marked = sum(line["watermarked"] for line in lines)
    summary = (f"{len(lines)} inputs, {n_marked} watermarked at alpha={args.alpha:g} "
               f"[{protection.spec}, key {key.fingerprint}]")
    if pooled is not None:
        verdict = "WATERMARKED" if pooled.log10_p < log_alpha else "NOT DETECTED"
        summary += (f"; pooled: {verdict} log10_p={pooled.log10_p:.2f} z={pooled.z:.2f} "
                    f"over {pooled.n_scored} distinct tuples")
        if pooled.tail != "exact":
            summary += f" ({pooled.tail})"
    if rule:
        summary += f"; reference {args.reference}: {rule}"
    if reference is not None:
        summary += f"; reference texts {args.reference_texts}: {len(reference)} texts"
    stream = sys.stderr if not args.out else sys.stdout
    print(summary, file=stream)
    print(family.describe(), file=stream)
    if family.templated:
        import warnings

        warnings.warn(family.warning())
    return 0
