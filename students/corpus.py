"""Corpora of teacher outputs: generated in shards under a protection, resumable, verifiable.

A corpus folder holds `manifest.json` and `shard-NNNNN.jsonl` files. Each record has `id`,
`prompt`, `completion`, `prompt_ids`, `completion_ids`, `stop` ("eos" or "length"), for task-suite
prompts also `skill` and `answer`, and on request `topk_ids` / `topk_logprobs` (one list per
generated position, the EOS position included when the teacher stopped).

Resuming: the manifest is written first with the full plan and rewritten after every finished
shard (each write atomic). Shard i is sampled with seeds derived from (seed, i, batch) only, so a
rerun after a kill regenerates exactly the missing shards and the result equals an uninterrupted
run. A different plan in the same folder is refused rather than mixed in.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from antidistill.watermark import check_vocab, load_key, parse_protection
from antidistill.watermark.errors import UserError, atomic_write, check_text, output_lock, read_lines

from .cache import check_out_dir
from .countermeasures import check_inputs, prepare
from .sampling import encode_prompts, generate_batch
from .tasks import make_split
from .tokenizer import tokenizer_fingerprint

FORMAT = "antidistill-corpus"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Settings that must match for a rerun to resume a folder (the rest is bookkeeping).
PLAN_KEYS = ("teacher", "tokenizer_fingerprint", "vocab_size", "protection", "key_fingerprint", "seed",
             "temperature", "max_new_tokens", "topk_logprobs", "batch_size", "shard_size", "prompts_sha256",
             "n_prompts")


def derive_seed(*parts) -> int:
    """A 63-bit seed from any tuple of values (stable across runs and machines)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as err:
        raise UserError(f"cannot read {path} ({err.strerror})") from None
    return h.hexdigest()


# ---------------------------------------------------------------- prompts


def load_prompts(prompts, *, seed: int = 0, chat: bool = False) -> tuple[list[dict], str]:
    """Prompt records [{id, prompt, (skill, answer)}] and a description of their source.

    `prompts` is a count N (the task suite's distillation split, N prompts, drawn with `seed`),
    a file (.jsonl with a "prompt" field per line, or text with one prompt per line), or a list
    of strings. Plain-text prompts for a model without a chat template get a trailing newline,
    the convention the demo teacher was trained with.
    """
    if isinstance(prompts, int) or (isinstance(prompts, str) and prompts.strip().isdigit()):
        n = int(prompts)
        if n <= 0:
            raise UserError(f"--prompts must be a positive count or a file, got {n}")
        examples = make_split("distill", n, seed=seed)
        return ([{"id": e.id, "prompt": e.prompt, "skill": e.skill, "answer": e.answer} for e in examples],
                f"task-suite:distill:seed={seed}")
    if isinstance(prompts, (list, tuple)):
        texts = list(prompts)
        return ([{"id": f"p{i:06d}", "prompt": _line_prompt(t, chat)} for i, t in enumerate(texts)], "list")
    path = Path(prompts)
    if not path.exists():
        raise UserError(f"prompt file {path} does not exist; pass --prompts N (task-suite prompts) or a "
                        ".jsonl/.txt file")
    records = []
    for lineno, line in read_lines(path, "prompt file"):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                obj = json.loads(line)
                text = obj["prompt"]
                if not isinstance(text, str):
                    raise TypeError
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{path} line {lineno}: expected a JSON object with a string \"prompt\" field") \
                    from None
            check_text(text, f"{path} line {lineno}", "prompt")
            records.append({"id": check_text(str(obj.get("id", f"p{len(records):06d}")), f"{path} line {lineno}",
                                             "id"), "prompt": text})
        else:
            records.append({"id": f"p{len(records):06d}", "prompt": _line_prompt(line, chat)})
    if not records:
        raise UserError(f"prompt file {path} holds no prompts")
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        raise UserError(f"prompt file {path}: ids must be unique")
    return records, f"file:{path.name}"


def _line_prompt(text: str, chat: bool) -> str:
    return text if chat or text.endswith("\n") else text + "\n"


def _prompts_sha256(records: list[dict]) -> str:
    blob = json.dumps([[r["id"], r["prompt"]] for r in records], ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


# ---------------------------------------------------------------- generation


def generate_corpus(teacher, out, *, protection="none", key=None, key_file=None, prompts=100,
                    temperature: float = 1.0, max_new_tokens: int = 128, topk_logprobs: int = 0,
                    seed: int = 0, batch_size: int = 32, shard_size: int = 256, device=None,
                    progress: bool = True, teacher_name: str | None = None, cache_dir=None) -> dict:
    """Sample the teacher on the prompts under `protection`; write (or finish) the corpus in `out`.

    `teacher` is a name for `load_model` or a (model, tokenizer) pair (then give `teacher_name`
    for the manifest). Returns the final manifest.
    """
    from .models import resolve_device

    protection = parse_protection(protection)
    resolve_device(device)  # refuse a missing device before loading anything
    if protection.needs_key and key is None:
        key = load_key(key_file)
    if not (isinstance(temperature, (int, float)) and 0 < temperature <= 100):
        raise UserError(f"--temperature must be a finite number with 0 < T <= 100 (sampling), got {temperature}")
    for name, value in (("max-new-tokens", max_new_tokens), ("batch-size", batch_size),
                        ("shard-size", shard_size)):
        if not (type(value) is int and value > 0):
            raise UserError(f"--{name} must be positive, got {value}")
    if topk_logprobs < 0:
        raise UserError(f"--topk-logprobs must be >= 0, got {topk_logprobs}")
    out = Path(out)
    check_out_dir(out)
    # A second generation into this folder is refused while this one runs (the lock also removes the
    # folder again when this call created it and wrote nothing into it).
    with output_lock(out, "corpus folder"):
        try:
            return _generate_into(out, teacher, teacher_name, protection, key, prompts, temperature, max_new_tokens,
                                  topk_logprobs, seed, batch_size, shard_size, device, progress, cache_dir)
        except BaseException:
            _drop_empty_start(out)
            raise


def _drop_empty_start(out: Path) -> None:
    """After a failure, remove what records no progress, so the corrected command is not refused:
    a manifest without finished shards."""
    path = out / MANIFEST
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(m, dict) and m.get("format") == FORMAT and not m.get("shards") and not m.get("complete"):
            path.unlink()
    except (OSError, ValueError):
        pass


def _generate_into(out: Path, teacher, teacher_name, protection, key, prompts, temperature, max_new_tokens,
                   topk_logprobs, seed, batch_size, shard_size, device, progress, cache_dir) -> dict:
    from .models import load_model, resolve_device

    manifest_path = out / MANIFEST
    for stale in [*out.glob(f".{MANIFEST}.*.tmp"), *out.glob(".shard-*.jsonl.*.tmp")]:
        stale.unlink(missing_ok=True)  # left by a kill inside atomic_write: never part of the corpus
    if not manifest_path.exists() and any(p.name != MANIFEST and not p.name.startswith(".") for p in out.iterdir()):
        raise UserError(f"output folder {out} is not empty and holds no corpus manifest; choose an empty "
                        "or new folder")

    if isinstance(teacher, str):
        teacher_name = teacher_name or teacher
        if teacher == "demo":  # name the exact recipe, so corpora of different demo teachers never mix
            from .teacher import teacher_dir

            teacher_name = teacher_dir(cache_dir=cache_dir).name
        model, tokenizer = load_model(teacher, cache_dir=cache_dir)
    else:
        model, tokenizer = teacher
        teacher_name = teacher_name or getattr(model.config, "_name_or_path", "") or "model"
    device = resolve_device(device)
    model = model.to(device).eval()
    vocab_size = check_vocab(model, tokenizer, allow_padding=True)
    if topk_logprobs > vocab_size:
        raise UserError(f"--topk-logprobs {topk_logprobs} exceeds the teacher's vocabulary ({vocab_size} tokens)")
    chat = bool(getattr(tokenizer, "chat_template", None))
    records, source = load_prompts(prompts, seed=seed, chat=chat)
    check_inputs(protection, records, topk_logprobs)

    plan = {
        "teacher": teacher_name, "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "vocab_size": vocab_size, "protection": protection.spec,
        "key_fingerprint": key.fingerprint if protection.needs_key else None, "seed": seed,
        "temperature": temperature, "max_new_tokens": max_new_tokens, "topk_logprobs": topk_logprobs,
        "batch_size": batch_size, "shard_size": shard_size, "prompts_sha256": _prompts_sha256(records),
        "n_prompts": len(records),
    }
    n_shards = (len(records) + shard_size - 1) // shard_size
    manifest = _start_manifest(manifest_path, plan, source, n_shards)
    done = {s["index"]: s for s in manifest["shards"] if (out / s["file"]).is_file()
            and _sha256_file(out / s["file"]) == s["sha256"]}
    if manifest["complete"] and len(done) == n_shards:
        return manifest
    manifest["shards"] = [done[i] for i in sorted(done)]

    prepared = prepare(protection, model, tokenizer, teacher_name, cache_dir=cache_dir, device=device,
                       progress=progress)
    model = prepared.model.to(device).eval()
    processor = protection.processor(key, vocab_size, temperature=temperature, top_k=0, top_p=1.0,
                                     **prepared.resources)
    todo = [i for i in range(n_shards) if i not in done]
    n_todo = sum(len(records[i * shard_size:(i + 1) * shard_size]) for i in todo)
    bar = tqdm(total=n_todo, desc=f"generate {protection.scheme}", unit="prompt", disable=not progress,
               file=sys.stderr)
    t0, n_tok = time.perf_counter(), 0
    for i in todo:
        chunk = records[i * shard_size:(i + 1) * shard_size]
        lines = []
        for b in range(0, len(chunk), batch_size):
            batch = chunk[b:b + batch_size]
            prompt_ids = encode_prompts(tokenizer, [r["prompt"] for r in batch])
            res = generate_batch(model, tokenizer, prompt_ids, max_new_tokens=max_new_tokens, do_sample=True,
                                 temperature=temperature, processor=processor, topk=topk_logprobs,
                                 seed=derive_seed("corpus", seed, i, b))
            texts = tokenizer.batch_decode(res.completions, skip_special_tokens=True)
            recs = []
            for j, r in enumerate(batch):
                rec = {"id": r["id"], "prompt": r["prompt"], "completion": texts[j],
                       "prompt_ids": prompt_ids[j], "completion_ids": res.completions[j], "stop": res.stops[j]}
                for extra in ("skill", "answer"):
                    if extra in r:
                        rec[extra] = r[extra]
                if topk_logprobs:
                    rec["topk_ids"] = res.topk_ids[j]
                    rec["topk_logprobs"] = res.topk_logprobs[j]
                recs.append(rec)
            if prepared.transform is not None:
                prepared.transform(recs)
            lines += [json.dumps(rec, ensure_ascii=False, separators=(",", ":")) for rec in recs]
            n_tok += res.n_tokens
            bar.update(len(batch))
            bar.set_postfix(tok_s=f"{n_tok / max(time.perf_counter() - t0, 1e-9):.0f}")
        name = f"shard-{i:05d}.jsonl"
        with atomic_write(out / name) as fh:
            fh.write("\n".join(lines) + "\n")
        manifest["shards"].append({"index": i, "file": name, "n_records": len(chunk),
                                   "sha256": _sha256_file(out / name)})
        manifest["shards"].sort(key=lambda s: s["index"])
        manifest["generation_seconds"] = round(manifest.get("generation_seconds", 0.0)
                                               + time.perf_counter() - t0, 2)
        manifest["generated_tokens_this_run"] = n_tok
        _write_manifest(manifest_path, manifest)
        t0, n_tok = time.perf_counter(), 0
    bar.close()
    return _finish(out, manifest_path, manifest)


def _start_manifest(path: Path, plan: dict, source: str, n_shards: int) -> dict:
    if path.exists():
        old = _load_manifest(path)
        diffs = [k for k in PLAN_KEYS if old.get(k) != plan[k]]
        if diffs:
            raise UserError(f"{path.parent} holds a corpus made with other settings ({', '.join(diffs)} "
                            "differ); use a new --out folder or delete this one")
        return old
    import transformers


    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **plan, "prompt_source": source,
                "n_shards": n_shards, "shards": [], "complete": False,
                "versions": {"antidistill": _version(), "torch": torch.__version__,
                             "transformers": transformers.__version__},
                "generation_seconds": 0.0}
    _write_manifest(path, manifest)
    return manifest


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("antidistill")
    except Exception:  # not installed as a distribution (e.g. run from a source tree)
        return "unknown"


def _finish(out: Path, path: Path, manifest: dict) -> dict:
    n_records = n_tokens = n_eos = 0
    for rec in iter_records(out, manifest):
        n_records += 1
        n_tokens += len(rec["completion_ids"])
        n_eos += rec["stop"] == "eos"
    manifest.pop("generated_tokens_this_run", None)
    manifest["counts"] = {"records": n_records, "completion_tokens": n_tokens, "stopped_at_eos": n_eos}
    secs = manifest.get("generation_seconds") or 0.0
    manifest["tokens_per_second"] = round((n_tokens + n_eos) / secs, 1) if secs else None
    manifest["complete"] = True
    _write_manifest(path, manifest)
    return manifest


def _write_manifest(path: Path, manifest: dict) -> None:
    with atomic_write(path) as fh:
        json.dump(manifest, fh, indent=2, ensure_ascii=False)
        fh.write("\n")


def _load_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not a readable corpus manifest ({type(err).__name__}); regenerate the "
                        "corpus with antidistill generate") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{path} is not an antidistill corpus manifest; regenerate the corpus")
    _check_manifest(path, manifest)
    return manifest


def _check_manifest(path: Path, m: dict) -> None:
    """The fields that reading relies on, with the types it relies on (a hand-edited manifest)."""
    def bad(what: str):
        raise UserError(f"{path}: {what}; regenerate the corpus with antidistill generate")

    shards = m.get("shards")
    if not isinstance(shards, list):
        bad("`shards` must be a list")
    for n, s in enumerate(shards, start=1):
        if not (isinstance(s, dict) and type(s.get("index")) is int and isinstance(s.get("sha256"), str)
                and isinstance(s.get("file"), str)):
            bad(f"shard entry {n} needs an integer `index`, a `file` name and a `sha256`")
        # Shards sit in the corpus folder itself: a path would read files from anywhere.
        if Path(s["file"]).name != s["file"] or s["file"] in ("", ".", "..") or s["file"].startswith("."):
            bad(f"shard file {s['file']!r} must be a plain file name inside the corpus folder")
    for k in ("n_shards", "vocab_size"):
        if k in m and not (type(m[k]) is int and m[k] >= 0):
            bad(f"`{k}` must be a non-negative integer")


# ---------------------------------------------------------------- reading


@dataclass
class Corpus:
    path: Path
    manifest: dict
    records: list[dict]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def sequences(self) -> list[list[int]]:
        return [r["completion_ids"] for r in self.records]

    @property
    def prompts(self) -> list[list[int]]:
        return [r["prompt_ids"] for r in self.records]


def is_corpus(path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path) -> dict:
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise UserError(f"{path} is not a corpus folder (no {MANIFEST}); make one with antidistill generate")
    return _load_manifest(path / MANIFEST)


def iter_records(path, manifest: dict | None = None):
    """Records of a complete corpus in order, each shard checked against its manifest hash."""
    path = Path(path)
    manifest = manifest or read_manifest(path)
    shards = sorted(manifest.get("shards", []), key=lambda s: s["index"])
    if len(shards) != manifest.get("n_shards") or [s["index"] for s in shards] != list(range(len(shards))):
        raise UserError(f"corpus {path} is incomplete ({len(shards)} of {manifest.get('n_shards')} shards); "
                        "rerun the same antidistill generate command to finish it")
    for s in shards:
        f = path / s["file"]
        if not f.is_file():
            raise UserError(f"corpus {path}: shard {s['file']} is missing; rerun the same antidistill "
                            "generate command to regenerate it")
        if _sha256_file(f) != s["sha256"]:
            raise UserError(f"corpus {path}: shard {s['file']} is corrupt (checksum differs from the manifest); "
                            "delete it and rerun the same antidistill generate command")
        vocab = manifest.get("vocab_size")
        for lineno, line in read_lines(f, "corpus shard"):
            where = f"corpus {path}: {s['file']} line {lineno}"
            try:
                rec = json.loads(line)
                ok = all(_token_ids(rec[k], vocab) for k in ("prompt_ids", "completion_ids"))
            except (json.JSONDecodeError, KeyError, TypeError):
                ok = False
            if not ok:
                raise UserError(f"{where} is not a valid record (`prompt_ids` and `completion_ids` must be lists "
                                f"of token ids{f' below the vocabulary size {vocab}' if vocab else ''})")
            yield rec


def _token_ids(ids, vocab: int | None) -> bool:
    """A list of non-negative ints (below `vocab` when known)."""
    return isinstance(ids, list) and all(type(t) is int for t in ids) and \
        (not ids or (min(ids) >= 0 and (not vocab or max(ids) < vocab)))


def mismatches(manifest: dict, *, protection=None, key=None, tokenizer_fp: str | None = None) -> str:
    """What differs between a corpus manifest and the settings it is being tested with ('' if nothing).

    Testing with another key or spec is allowed (a null control, say); silently is the trap: a
    detector with other settings than the generator answers NOT DETECTED and nothing else.
    """
    diffs = []
    if protection is not None and manifest.get("protection") not in (None, protection.spec):
        diffs.append(f"protection {manifest['protection']} (not {protection.spec})")
    if key is not None and manifest.get("key_fingerprint") not in (None, key.fingerprint):
        diffs.append(f"key fingerprint {manifest['key_fingerprint']} (not {key.fingerprint})")
    if tokenizer_fp is not None and manifest.get("tokenizer_fingerprint") not in (None, tokenizer_fp):
        diffs.append(f"tokenizer {manifest['tokenizer_fingerprint']} (not {tokenizer_fp})")
    return "; ".join(diffs)


def read_corpus(path) -> Corpus:
    """Load and verify a complete corpus folder (manifest, every shard's checksum, every record)."""
    path = Path(path)
    manifest = read_manifest(path)
    if not manifest.get("complete"):
        raise UserError(f"corpus {path} is incomplete; rerun the same antidistill generate command to finish it")
    return Corpus(path, manifest, list(iter_records(path, manifest)))
