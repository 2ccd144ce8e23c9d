"""The corpus format: a folder of teacher outputs in shards with a manifest; reading, verifying, writing.

Generation lives in `protect/generate.py` (sampling under a prepared protection); this module
only knows the files.

A corpus folder holds `manifest.json` and `shard-NNNNN.jsonl` files. Each record has `id`,
`prompt`, `completion`, `prompt_ids`, `completion_ids`, `stop` ("eos" or "length"), for a task's
prompts also `skill` and `answer` (the manifest's `task` names the task), and on request `topk_ids` / `topk_logprobs` (one list per
generated position, the EOS position included when the teacher stopped).

Resuming: the manifest is written first with the full plan and rewritten after every finished
shard (each write atomic). Shard i is sampled with seeds derived from (seed, i, batch) only, so a
rerun after a kill regenerates exactly the missing shards and the result equals an uninterrupted
run. A different plan in the same folder is refused rather than mixed in.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from importlib.metadata import PackageNotFoundError, version

import torch
import transformers

from antidistill.watermark.errors import UserError, atomic_write, read_lines

FORMAT = "antidistill-corpus"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Settings that must match for a rerun to resume a folder (the rest is bookkeeping).
PLAN_KEYS = ("teacher", "tokenizer_fingerprint", "vocab_size", "protection", "key_fingerprint", "seed",
             "temperature", "max_new_tokens", "topk_logprobs", "batch_size", "shard_size", "prompts_sha256",
             "n_prompts", "task")
# A plan key an older manifest lacks reads as its value then (corpora made before tasks were demo's).
PLAN_DEFAULTS = {"task": "demo"}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as err:
        raise UserError(f"cannot read {path} ({err.strerror})") from None
    return h.hexdigest()


# ---------------------------------------------------------------- writing


def start_manifest(path: Path, plan: dict, source: str, n_shards: int) -> dict:
    """The manifest of a corpus folder: the one there (refused when its plan differs), else a new one."""
    if path.exists():
        old = _load_manifest(path)
        diffs = [k for k in PLAN_KEYS if old.get(k, PLAN_DEFAULTS.get(k)) != plan[k]]
        if diffs:
            raise UserError(f"{path.parent} holds a corpus made with other settings ({', '.join(diffs)} "
                            "differ); use a new --out folder or delete this one")
        return old
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **plan, "prompt_source": source,
                "n_shards": n_shards, "shards": [], "complete": False,
                "versions": {"antidistill": antidistill_version(), "torch": torch.__version__,
                             "transformers": transformers.__version__},
                "generation_seconds": 0.0}
    write_manifest(path, manifest)
    return manifest


def antidistill_version() -> str:
    """The installed antidistill version, for manifests ("unknown" when run from a source tree)."""
    try:
        return version("antidistill")
    except PackageNotFoundError:  # not installed as a distribution (e.g. run from a source tree)
        return "unknown"


def finish_manifest(out: Path, manifest: dict) -> dict:
    """Count the records of a corpus whose shards are all written and mark its manifest complete."""
    path = out / MANIFEST
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
    write_manifest(path, manifest)
    return manifest


def write_shard(out: Path, index: int, records: list[dict]) -> dict:
    """Write shard `index` of `records` (one compact JSON object a line); its manifest entry."""
    name = f"shard-{index:05d}.jsonl"
    with atomic_write(out / name) as fh:
        fh.write("".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records))
    return {"index": index, "file": name, "n_records": len(records), "sha256": sha256_file(out / name)}


def write_records(records: list[dict], out, manifest: dict) -> Path:
    """Save records (attacked, mixed, ...) as a complete one-shard corpus folder; `manifest` holds the
    descriptive fields (its source's, say) and gets the shard list and counts."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shard = write_shard(out, 0, records)
    write_manifest(out / MANIFEST, {
        **manifest, "format": FORMAT, "format_version": FORMAT_VERSION, "n_prompts": len(records), "n_shards": 1,
        "complete": True, "shards": [shard],
        "counts": {"records": len(records), "completion_tokens": sum(len(r["completion_ids"]) for r in records)}})
    return out


def drop_empty_start(out: Path) -> None:
    """After a failure, remove what records no progress, so the corrected command is not refused:
    a manifest without finished shards."""
    path = out / MANIFEST
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(m, dict) and m.get("format") == FORMAT and not m.get("shards") and not m.get("complete"):
            path.unlink()
    except (OSError, ValueError):
        pass


def write_manifest(path: Path, manifest: dict) -> None:
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
    """A verified, complete corpus in memory: its folder, its manifest and every record in order."""

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
        if sha256_file(f) != s["sha256"]:
            raise UserError(f"corpus {path}: shard {s['file']} is corrupt (checksum differs from the manifest); "
                            "delete it and rerun the same antidistill generate command")
        vocab = manifest.get("vocab_size")
        for lineno, line in read_lines(f, "corpus shard"):
            where = f"corpus {path}: {s['file']} line {lineno}"
            try:
                rec = json.loads(line)
                ok = all(token_ids_ok(rec[k], vocab) for k in ("prompt_ids", "completion_ids"))
            except (json.JSONDecodeError, KeyError, TypeError):
                ok = False
            if not ok:
                raise UserError(f"{where} is not a valid record (`prompt_ids` and `completion_ids` must be lists "
                                f"of token ids{f' below the vocabulary size {vocab}' if vocab else ''})")
            yield rec


def token_ids_ok(ids, vocab: int | None) -> bool:
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
