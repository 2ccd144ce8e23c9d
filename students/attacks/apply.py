"""Applying attack specs where they act: what a run config's `attacks = [...]` list calls.

- `apply_corpus_attack(spec, records, tokenizer=..., clean=..., student=..., ...)` -> records
- `apply_student_attack(spec, student_dir, out, clean=...)` -> the attacked student's folder
- `decoding_settings(spec, model, tokenizer, prompts=..., reference=...)` -> sampling settings for the
  auditor's generation-mode queries (temperature, top_p, logits processor)

`clean_records` builds the attacker's clean data (the task suite's own traces, a source the teacher's
key never touched) and `write_corpus` saves attacked records as a corpus folder that
`antidistill train` reads.
"""
from __future__ import annotations

import json
from pathlib import Path

from antidistill.watermark.errors import UserError, atomic_write

from . import corpus as C
from .spec import Attack, parse_attack


def clean_records(n: int, tokenizer, *, seed: int = 0, split: str = "train") -> list[dict]:
    """n task-suite examples as corpus records (the suite's true traces, ending in EOS)."""
    from ..sampling import encode_prompts
    from ..tasks import make_split

    examples = make_split(split, n, seed=seed, unique=False)
    prompts = encode_prompts(tokenizer, [e.prompt for e in examples])
    comps = tokenizer([e.completion for e in examples], add_special_tokens=False)["input_ids"] if examples else []
    return [{"id": f"clean-{e.id}", "prompt": e.prompt, "completion": e.completion, "prompt_ids": p,
             "completion_ids": list(c), "stop": "eos", "skill": e.skill, "answer": e.answer}
            for e, p, c in zip(examples, prompts, comps)]


def _need(name: str, value, what: str):
    if value is None:
        raise UserError(f"attack {name} needs {what}")
    return value


def apply_corpus_attack(spec, records: list[dict], *, tokenizer=None, clean: list[dict] | None = None,
                        student=None, paraphraser=None, seed: int = 0) -> list[dict]:
    """The records after one corpus attack.

    Resources, as the attack needs them: `tokenizer` (the student's: rewritten text is re-encoded),
    `clean` records (dilute; the first `holdout` of them are reweight's hold-out set), `student`
    ((model, tokenizer) whose hold-out gradient reweight follows), `paraphraser` ((model, tokenizer);
    default: loaded from the spec's model name)."""
    a = parse_attack(spec)
    if a.stage != "corpus":
        raise UserError(f"attack {a.spec} acts on the {a.stage}, not on the corpus")
    if a.name == "canonicalize":
        return C.canonicalize(records, _need(a.name, tokenizer, "the student's tokenizer"))
    if a.name == "answer-only":
        return C.strip_traces(records, _need(a.name, tokenizer, "the student's tokenizer"))
    if a.name == "dilute":
        return C.dilute(records, _need(a.name, clean, "clean records"), a.rho, seed)
    if a.name == "filter":
        return C.verified(records, a.by, a.k)
    if a.name == "dedup":
        return C.deduplicate(records, a.threshold, a.num_perm, a.shingle, seed)
    if a.name == "reweight":
        from .reweight import reweight

        model, tok = _need(a.name, student, "a student (model, tokenizer) to take the hold-out gradient of")
        holdout = _need(a.name, clean, "clean hold-out records")[:a.holdout]
        return reweight(records, model, tok, holdout, eps=a.eps, beta=a.beta, by=a.weights)
    if a.name == "paraphrase":
        if paraphraser is None:  # `smollm2` included: converted from its GGUF once, then cached
            from ..models import load_model

            paraphraser = load_model(a.model)
        model, tok = paraphraser
        return C.paraphrase(records, model, tok, student_tokenizer=tokenizer, temperature=a.temperature,
                            max_new_tokens=a.max_new_tokens, batch_size=a.batch_size, seed=seed)
    raise AssertionError(a.name)


def apply_student_attack(spec, student_dir, out, *, clean_corpus, seed: int = 0, progress: bool = False,
                         cache_dir=None) -> Path:
    """Continued fine-tuning of a trained student (folder) on a clean corpus folder; returns `out`
    (a `train` output folder, resumable like any other)."""
    from ..distill import train_student

    a = parse_attack(spec)
    if a.name != "finetune":
        raise UserError(f"attack {a.spec} does not act on the student's weights (student attacks: finetune)")
    out = Path(out)
    if a.steps == 0:
        return Path(student_dir)
    train_student(str(Path(student_dir) / "model") if (Path(student_dir) / "model").is_dir() else str(student_dir),
                  clean_corpus, out, max_steps=a.steps, lr=a.lr, batch_size=a.batch_size, seed=seed,
                  save_steps=10_000, progress=progress, logging_steps=max(1, a.steps // 4), cache_dir=cache_dir)
    return out


def decoding_settings(spec, model, tokenizer, *, prompts=None, reference=None, seed: int = 0,
                      max_new_tokens: int = 128) -> dict:
    """What the suspect changes in how it answers the auditor: {temperature, top_p} (decode) or
    {processor} (neutralize, which first samples the suspect and the clean `reference` model on
    `prompts` to estimate what to counter); the rest stays as the audit asks."""
    a = parse_attack(spec)
    if a.name == "decode":
        return {"temperature": a.temperature, "top_p": a.top_p}
    if a.name == "neutralize":
        from .neutralize import fit_neutralizer

        proc = fit_neutralizer(model, _need(a.name, reference, "a clean reference model"), tokenizer,
                               _need(a.name, prompts, "prompts to sample"), h=a.h, strength=a.strength,
                               min_count=a.min_count, margin=a.margin, samples=a.samples, seed=seed,
                               max_new_tokens=max_new_tokens)
        return {"processor": proc}
    raise UserError(f"attack {a.spec} does not change decoding (decode attacks: decode, neutralize)")


def write_corpus(records: list[dict], out, *, source_manifest: dict, attacks: list) -> Path:
    """Save attacked records as a complete corpus folder: one shard, the source's manifest with the
    attacks listed and the record count updated."""
    from ..corpus import FORMAT, FORMAT_VERSION, MANIFEST, _sha256_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = "shard-00000.jsonl"
    with atomic_write(out / name) as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
    specs = [a.spec if isinstance(a, Attack) else parse_attack(a).spec for a in attacks]
    manifest = {**source_manifest, "format": FORMAT, "format_version": FORMAT_VERSION,
                "attacks": list(source_manifest.get("attacks", [])) + specs, "n_prompts": len(records),
                "n_shards": 1, "complete": True,
                "shards": [{"index": 0, "file": name, "n_records": len(records), "sha256": _sha256_file(out / name)}],
                "counts": {"records": len(records),
                           "completion_tokens": sum(len(r["completion_ids"]) for r in records)}}
    with atomic_write(out / MANIFEST) as fh:
        json.dump(manifest, fh, indent=2, ensure_ascii=False)
    return out


def by_stage(attacks, stage: str) -> list[Attack]:
    """The attacks of a parsed list that act at `stage` (corpus, student or decode), in order."""
    return [a for a in attacks if a.stage == stage]


def attack_corpus_folder(attacks, source, out, *, tokenizer, clean=None, student=None, paraphraser=None,
                         seed: int = 0) -> Path:
    """The corpus attacks of a config's list applied in order to the corpus folder `source`; the result
    is written to `out` as a corpus folder. `student` may be a callable returning (model, tokenizer),
    called only if a reweight attack needs it."""
    from ..corpus import read_corpus

    src = read_corpus(source)
    records = src.records
    done = []
    for a in by_stage([parse_attack(x) for x in attacks], "corpus"):
        need = student() if a.name == "reweight" and callable(student) else student
        records = apply_corpus_attack(a, records, tokenizer=tokenizer, clean=clean, student=need,
                                      paraphraser=paraphraser, seed=seed)
        done.append(a)
    return write_corpus(records, out, source_manifest=src.manifest, attacks=done)
