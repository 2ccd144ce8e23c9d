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

from pathlib import Path

import torch

from antidistill.watermark.errors import UserError

from ..batching import encode_prompts
from ..corpus import read_corpus, token_ids_ok, write_records
from ..models.loader import load_model
from ..tasks.registry import parse_task
from ..training.distill import train_student
from . import corpus as C
from .neutralize import fit_neutralizer
from .reweight import reweight
from .spec import MAX_RECORDS, Attack, parse_attack


def clean_records(n: int, tokenizer, *, seed: int = 0, split: str = "train", task=None) -> list[dict]:
    """n examples of `task` (default: the demo suite) as corpus records, their reference completions
    ending in EOS (the suite's true traces; `Answer: X` for tasks that ship no traces)."""
    if not (isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_RECORDS):
        raise UserError(f"clean_records: n must be a whole number in 0 <= n <= {MAX_RECORDS}, got {n!r}")
    _tokenizer("clean_records", tokenizer)
    examples = parse_task(task).examples(split, n, seed=seed, unique=False)
    prompts = encode_prompts(tokenizer, [e.prompt for e in examples])
    comps = tokenizer([e.completion for e in examples], add_special_tokens=False)["input_ids"] if examples else []
    return [{"id": f"clean-{e.id}", "prompt": e.prompt, "completion": e.completion, "prompt_ids": p,
             "completion_ids": list(c), "stop": "eos", "skill": e.skill, "answer": e.answer}
            for e, p, c in zip(examples, prompts, comps)]


def _need(name: str, value, what: str):
    if value is None:
        raise UserError(f"attack {name} needs {what}")
    return value


def _tokenizer(name: str, tok):
    """A tokenizer (something `tok(texts)` encodes), not a name or a model."""
    if not (callable(tok) and hasattr(tok, "batch_decode")):
        raise UserError(f"{name}: tokenizer must be a transformers tokenizer, got {type(tok).__name__}")
    return tok


def _model_pair(name: str, pair, what: str):
    """(model, tokenizer): a torch module and its tokenizer."""
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], torch.nn.Module)):
        raise UserError(f"attack {name}: {what} must be a (model, tokenizer) pair, got {type(pair).__name__}"
                        f"{f' of {[type(x).__name__ for x in pair]}' if isinstance(pair, (tuple, list)) else ''}")
    _tokenizer(f"attack {name}", pair[1])
    return pair


def _check_records(name: str, records, what: str = "records", ids: bool = False) -> list[dict]:
    """Corpus records as the attacks read them: dicts with string `prompt` and `completion` (and, where
    the attack reads token ids, `prompt_ids` / `completion_ids` lists of token ids and an `id`); one
    line naming the first record that is not."""
    if not isinstance(records, (list, tuple)):
        raise UserError(f"attack {name}: {what} must be a list of corpus records (dicts), got {type(records).__name__}")
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise UserError(f"attack {name}: {what}[{i}] is a {type(r).__name__}, not a corpus record (dict)")
        for field in ("prompt", "completion"):
            if not isinstance(r.get(field), str):
                raise UserError(f"attack {name}: {what}[{i}] needs a string `{field}`, got {r.get(field)!r:.60}")
        if ids:
            for field in ("prompt_ids", "completion_ids"):
                if not token_ids_ok(r.get(field), None):
                    raise UserError(f"attack {name}: {what}[{i}] needs `{field}`, a list of token ids")
            if not isinstance(r.get("id"), (str, int)):
                raise UserError(f"attack {name}: {what}[{i}] needs an `id` (string or integer)")
    return list(records)


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
    ids = a.name in ("dilute", "reweight")  # these read ids (mixing by prompt id; losses of token ids)
    records = _check_records(a.name, records, ids=ids)
    if a.name in ("canonicalize", "answer-only") or (a.name == "paraphrase" and tokenizer is not None):
        _tokenizer(f"attack {a.name}", _need(a.name, tokenizer, "the student's tokenizer"))
    if a.name == "canonicalize":
        return C.canonicalize(records, tokenizer)
    if a.name == "answer-only":
        return C.strip_traces(records, tokenizer)
    if a.name == "dilute":
        return C.dilute(records, _check_records(a.name, _need(a.name, clean, "clean records"), "clean", ids=True),
                        a.rho, seed)
    if a.name == "filter":
        return C.verified(records, a.by, a.k)
    if a.name == "dedup":
        return C.deduplicate(records, a.threshold, a.num_perm, a.shingle, seed)
    if a.name == "reweight":
        model, tok = _model_pair(a.name, _need(a.name, student, "a student (model, tokenizer) to take the hold-out "
                                                                "gradient of"), "student")
        holdout = _check_records(a.name, _need(a.name, clean, "clean hold-out records"), "clean", ids=True)[:a.holdout]
        return reweight(records, model, tok, holdout, eps=a.eps, beta=a.beta, by=a.weights)
    if a.name == "paraphrase":
        if paraphraser is None:  # `smollm2` included: converted from its GGUF once, then cached
            paraphraser = load_model(a.model)
        model, tok = _model_pair(a.name, paraphraser, "paraphraser")
        return C.paraphrase(records, model, tok, student_tokenizer=tokenizer, temperature=a.temperature,
                            max_new_tokens=a.max_new_tokens, batch_size=a.batch_size, seed=seed)
    raise AssertionError(a.name)


def apply_student_attack(spec, student_dir, out, *, clean_corpus, seed: int = 0, progress: bool = False,
                         cache_dir=None) -> Path:
    """Continued fine-tuning of a trained student (folder) on a clean corpus folder; returns `out`
    (a `train` output folder, resumable like any other)."""
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
        proc = fit_neutralizer(model, _need(a.name, reference, "a clean reference model"), tokenizer,
                               _need(a.name, prompts, "prompts to sample"), h=a.h, strength=a.strength,
                               min_count=a.min_count, margin=a.margin, samples=a.samples, seed=seed,
                               max_new_tokens=max_new_tokens)
        return {"processor": proc}
    raise UserError(f"attack {a.spec} does not change decoding (decode attacks: decode, neutralize)")


def write_corpus(records: list[dict], out, *, source_manifest: dict, attacks: list) -> Path:
    """Save attacked records as a complete corpus folder: one shard, the source's manifest with the
    attacks listed and the record count updated."""
    specs = [a.spec if isinstance(a, Attack) else parse_attack(a).spec for a in attacks]
    return write_records(records, out, {**source_manifest, "attacks": list(source_manifest.get("attacks", [])) + specs})


def by_stage(attacks, stage: str) -> list[Attack]:
    """The attacks of a parsed list that act at `stage` (corpus, student or decode), in order."""
    return [a for a in attacks if a.stage == stage]


def attack_corpus_folder(attacks, source, out, *, tokenizer, clean=None, student=None, paraphraser=None,
                         seed: int = 0) -> Path:
    """The corpus attacks of a config's list applied in order to the corpus folder `source`; the result
    is written to `out` as a corpus folder. `student` may be a callable returning (model, tokenizer),
    called only if a reweight attack needs it."""
    src = read_corpus(source)
    records = src.records
    done = []
    for a in by_stage([parse_attack(x) for x in attacks], "corpus"):
        need = student() if a.name == "reweight" and callable(student) else student
        records = apply_corpus_attack(a, records, tokenizer=tokenizer, clean=clean, student=need,
                                      paraphraser=paraphraser, seed=seed)
        done.append(a)
    return write_corpus(records, out, source_manifest=src.manifest, attacks=done)
