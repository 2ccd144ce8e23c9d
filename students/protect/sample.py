"""Sampling a teacher into a corpus folder under an already-prepared protection, shard by shard.

`CorpusJob.open` binds a folder to its plan (resuming what a killed run left, refusing another plan);
`CorpusJob.run(prepared)` samples the missing shards with the protection's processor. Preparing the
protection (a defended teacher, proxy students, cached gradients) is the caller's business
(`prepare.prepare`), and happens only when there is something left to sample.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from antidistill.watermark import check_vocab, parse_protection
from antidistill.watermark.errors import UserError

from ..batching import encode_prompts
from ..corpus import MANIFEST, finish_manifest, sha256_file, start_manifest, write_manifest, write_shard
from ..models.sampling import generate_batch
from ..models.tokenizer import tokenizer_fingerprint
from ..tasks.prompts import load_prompts
from ..tasks.registry import parse_task


def derive_seed(*parts) -> int:
    """A 63-bit seed from any tuple of values (stable across runs and machines)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass
class Prepared:
    """A protection made ready to sample under: the model to sample (the teacher, or a defended
    teacher), the keyword resources its processor needs (proxy, gradient), and an optional rewrite of
    each batch of finished records (the trace countermeasure)."""

    model: object
    resources: dict = field(default_factory=dict)
    transform: Callable | None = None


@dataclass(frozen=True)
class SampleSettings:
    """How a corpus is sampled (all part of its plan): temperature, length, stored top-k log-probs, the
    seed every batch's seed derives from, and the batch and shard sizes."""

    temperature: float = 1.0
    max_new_tokens: int = 128
    topk_logprobs: int = 0
    seed: int = 0
    batch_size: int = 32
    shard_size: int = 256

    def __post_init__(self):
        t = self.temperature
        if not (isinstance(t, (int, float)) and 0 < t <= 100):
            raise UserError(f"--temperature must be a finite number with 0 < T <= 100 (sampling), got {t}")
        for name, value in (("max-new-tokens", self.max_new_tokens), ("batch-size", self.batch_size),
                            ("shard-size", self.shard_size)):
            if not (type(value) is int and value > 0):
                raise UserError(f"--{name} must be positive, got {value}")
        if self.topk_logprobs < 0:
            raise UserError(f"--topk-logprobs must be >= 0, got {self.topk_logprobs}")


def _prompts_sha256(records: list[dict]) -> str:
    blob = json.dumps([[r["id"], r["prompt"]] for r in records], ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


class CorpusJob:
    """Owns one corpus folder's generation: the plan (teacher, tokenizer, protection, key fingerprint,
    settings, prompts), the manifest on disk, which shards are still missing, and the loop that samples
    them with seeds derived from (seed, shard, batch) only."""

    def __init__(self, out: Path, model, tokenizer, records: list[dict], protection, key, settings: SampleSettings,
                 vocab_size: int, manifest: dict, todo: list[int]):
        self.out, self.model, self.tokenizer, self.records = out, model, tokenizer, records
        self.protection, self.key, self.settings, self.vocab_size = protection, key, settings, vocab_size
        self.manifest, self.todo = manifest, todo

    @classmethod
    def open(cls, out: Path, model, tokenizer, teacher_name: str, records: list[dict], source: str, protection,
             key, settings: SampleSettings, task=None) -> CorpusJob:
        """Bind `out` to this plan: start its manifest, or resume it (shards whose checksum holds are kept)."""
        vocab_size = check_vocab(model, tokenizer, allow_padding=True)
        if settings.topk_logprobs > vocab_size:
            raise UserError(f"--topk-logprobs {settings.topk_logprobs} exceeds the teacher's vocabulary "
                            f"({vocab_size} tokens)")
        s = settings
        plan = {
            "teacher": teacher_name, "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
            "vocab_size": vocab_size, "protection": protection.spec,
            "key_fingerprint": key.fingerprint if protection.needs_key else None, "seed": s.seed,
            "temperature": s.temperature, "max_new_tokens": s.max_new_tokens, "topk_logprobs": s.topk_logprobs,
            "batch_size": s.batch_size, "shard_size": s.shard_size, "prompts_sha256": _prompts_sha256(records),
            "n_prompts": len(records), "task": parse_task(task).key,
        }
        n_shards = (len(records) + s.shard_size - 1) // s.shard_size
        manifest = start_manifest(out / MANIFEST, plan, source, n_shards)
        done = {e["index"]: e for e in manifest["shards"] if (out / e["file"]).is_file()
                and sha256_file(out / e["file"]) == e["sha256"]}
        manifest["shards"] = [done[i] for i in sorted(done)]
        todo = [] if manifest["complete"] and len(done) == n_shards else [i for i in range(n_shards) if i not in done]
        return cls(out, model, tokenizer, records, protection, key, settings, vocab_size, manifest, todo)

    @property
    def finished(self) -> bool:
        return self.manifest["complete"] and not self.todo

    def run(self, prepared: Prepared, progress: bool = True) -> dict:
        """Sample the missing shards from `prepared.model` under the protection; the final manifest."""
        if self.finished:
            return self.manifest
        s, device = self.settings, next(self.model.parameters()).device
        model = prepared.model.to(device).eval()
        processor = self.protection.processor(self.key, self.vocab_size, temperature=s.temperature, top_k=0,
                                              top_p=1.0, **prepared.resources)
        n_todo = sum(len(self._shard(i)) for i in self.todo)
        bar = tqdm(total=n_todo, desc=f"generate {self.protection.scheme}", unit="prompt", disable=not progress,
                   file=sys.stderr)
        t0, n_tok = time.perf_counter(), 0
        for i in self.todo:
            recs = []
            for b in range(0, len(self._shard(i)), s.batch_size):
                batch_recs, n = self._sample_batch(model, processor, self._shard(i)[b:b + s.batch_size],
                                                   derive_seed("corpus", s.seed, i, b))
                if prepared.transform is not None:
                    prepared.transform(batch_recs)
                recs += batch_recs
                n_tok += n
                bar.update(len(batch_recs))
                bar.set_postfix(tok_s=f"{n_tok / max(time.perf_counter() - t0, 1e-9):.0f}")
            self._add_shard(write_shard(self.out, i, recs), t0, n_tok)
            t0, n_tok = time.perf_counter(), 0
        bar.close()
        return finish_manifest(self.out, self.manifest)

    def _shard(self, i: int) -> list[dict]:
        return self.records[i * self.settings.shard_size:(i + 1) * self.settings.shard_size]

    def _sample_batch(self, model, processor, batch: list[dict], seed: int) -> tuple[list[dict], int]:
        """Corpus records of one batch of prompt records, and the number of tokens generated."""
        s, tok = self.settings, self.tokenizer
        prompt_ids = encode_prompts(tok, [r["prompt"] for r in batch])
        res = generate_batch(model, tok, prompt_ids, max_new_tokens=s.max_new_tokens, do_sample=True,
                             temperature=s.temperature, processor=processor, topk=s.topk_logprobs, seed=seed)
        texts = tok.batch_decode(res.completions, skip_special_tokens=True)
        recs = []
        for j, r in enumerate(batch):
            rec = {"id": r["id"], "prompt": r["prompt"], "completion": texts[j],
                   "prompt_ids": prompt_ids[j], "completion_ids": res.completions[j], "stop": res.stops[j]}
            for extra in ("skill", "answer"):
                if extra in r:
                    rec[extra] = r[extra]
            if s.topk_logprobs:
                rec["topk_ids"] = res.topk_ids[j]
                rec["topk_logprobs"] = res.topk_logprobs[j]
            recs.append(rec)
        return recs, res.n_tokens

    def _add_shard(self, entry: dict, t0: float, n_tok: int) -> None:
        m = self.manifest
        m["shards"].append(entry)
        m["shards"].sort(key=lambda e: e["index"])
        m["generation_seconds"] = round(m.get("generation_seconds", 0.0) + time.perf_counter() - t0, 2)
        m["generated_tokens_this_run"] = n_tok
        write_manifest(self.out / MANIFEST, m)


def sample_plain(model, tokenizer, out: Path, prompts: list[str], settings: SampleSettings, teacher_name: str,
                 progress: bool = True) -> dict:
    """The teacher's unprotected outputs on `prompts` (the defender's own data: proxy students, gradients)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records, source = load_prompts(prompts, chat=bool(getattr(tokenizer, "chat_template", None)))
    job = CorpusJob.open(out, model, tokenizer, teacher_name, records, source, parse_protection("none"), None,
                         settings)
    return job.run(Prepared(model), progress)
