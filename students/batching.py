"""Texts and records to padded tensors: the one batching code of generation and every training loop.

- `encode_prompts` / `left_pad`: prompts as the model expects them, left-padded for generation.
- `example_features` (task-suite examples) and `record_features` (corpus records): one feature dict
  per sequence, `{"input_ids", "n_prompt"}` (+ `weight`, + top-k targets for logit KD).
- `Collator`: right-pads features into `input_ids` / `attention_mask` / `labels` (prompt masked),
  the KD targets and per-example weights; used by the demo teacher, distillation (`transformers.Trainer`),
  the proxy gradient, the DOGe teacher and the reweighting attack.
- `length_grouped_batches` / `LengthGroupedOrder`: one epoch's batches of similar lengths in random
  order, for the demo teacher's loop and the students' Trainer (a third less padding on the demo task).
"""
from __future__ import annotations

import torch

from antidistill.watermark.errors import UserError

MODES = ("sft", "logit-kd")


def encode_prompts(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Prompt texts to ids as the model expects them: the chat template when the tokenizer has one,
    else plain encoding (the project tokenizer adds BOS)."""
    if getattr(tokenizer, "chat_template", None):
        return [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                              tokenize=True, return_dict=False) for p in prompts]
    return [list(ids) for ids in tokenizer(prompts, add_special_tokens=True)["input_ids"]]


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids, mask


def example_features(tokenizer, examples) -> list[dict]:
    """Features of task-suite examples (`prompt`, `completion`): the completion ends with EOS."""
    prompts = encode_prompts(tokenizer, [e.prompt for e in examples])
    comps = tokenizer([e.completion for e in examples], add_special_tokens=False)["input_ids"]
    return [{"input_ids": p + c + [tokenizer.eos_token_id], "n_prompt": len(p)} for p, c in zip(prompts, comps)]


def _topk_ok(r: dict, vocab: int) -> bool:
    """Stored top-k ids and log-probs of one record: same [n, k] shape, ids in the vocabulary, no NaN."""
    try:
        ids, lp = torch.tensor(r["topk_ids"]), torch.tensor(r["topk_logprobs"], dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        return False
    if ids.numel() == 0:
        return lp.numel() == 0
    return (ids.dtype == torch.int64 and ids.dim() == 2 and ids.shape == lp.shape and int(ids.min()) >= 0
            and int(ids.max()) < vocab and not bool(lp.isnan().any()))


def _kd_targets(r: dict, f: dict, n_prompt_ids: int, vocab: int | None) -> None:
    if "topk_ids" not in r:
        raise UserError("--mode logit-kd needs a corpus generated with --topk-logprobs K")
    if vocab is not None and not _topk_ok(r, vocab):
        raise UserError(f"record {r.get('id')!r}: `topk_ids` / `topk_logprobs` must be matching [n, k] lists "
                        f"of token ids below {vocab} and log-probabilities")
    n_kd = max(0, min(len(r["topk_ids"]), len(f["input_ids"]) - n_prompt_ids + 1))
    f["topk_ids"] = r["topk_ids"][:n_kd]
    f["topk_logprobs"] = r["topk_logprobs"][:n_kd]


def record_features(records: list[dict], tokenizer, mode: str = "sft", retokenize: bool = False,
                    max_len: int = 10**9, vocab: int | None = None) -> list[dict]:
    """Features of corpus records: the stored ids (or, with `retokenize`, the texts re-encoded with
    `tokenizer`), EOS appended where the teacher stopped, cut at `max_len`; `logit-kd` adds the
    stored top-k targets (checked against `vocab`)."""
    eos = tokenizer.eos_token_id
    if retokenize:
        prompts = encode_prompts(tokenizer, [r["prompt"] for r in records])
        comps = tokenizer([r["completion"] for r in records], add_special_tokens=False)["input_ids"]
    else:
        prompts = [r["prompt_ids"] for r in records]
        comps = [r["completion_ids"] for r in records]
    feats = []
    for r, p, c in zip(records, prompts, comps):
        target = list(c) + ([eos] if r.get("stop") == "eos" else [])
        ids = (list(p) + target)[:max_len]
        f = {"input_ids": ids, "n_prompt": min(len(p), len(ids))}
        if "weight" in r:
            f["weight"] = float(r["weight"])
        if mode == "logit-kd":
            _kd_targets(r, f, len(p), vocab)
        feats.append(f)
    return feats


class Collator:
    """Owns the padding of a training batch: right-pads `input_ids`, masks the prompt in `labels`,
    places KD targets at the positions predicting each generated token, passes per-example
    `weights` on, and counts the real (non-pad) tokens it hands out, for tokens/s."""

    def __init__(self, pad_id: int, kd: bool = False):
        self.pad_id, self.kd, self.n_tokens = pad_id, kd, 0

    def __call__(self, batch: list[dict]) -> dict:
        width = max(len(b["input_ids"]) for b in batch)
        n = len(batch)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        labels = torch.full((n, width), -100, dtype=torch.long)
        for i, b in enumerate(batch):
            t = torch.tensor(b["input_ids"], dtype=torch.long)
            ids[i, :len(t)] = t
            mask[i, :len(t)] = 1
            labels[i, b["n_prompt"]:len(t)] = t[b["n_prompt"]:]  # learn the answer, not the prompt
        self.n_tokens += int(mask.sum())
        out = {"input_ids": ids, "attention_mask": mask}
        if not self.kd:
            out["labels"] = labels
            if any("weight" in b for b in batch):
                out["weights"] = torch.tensor([b.get("weight", 1.0) for b in batch], dtype=torch.float32)
            return out
        out.update(self._kd(batch, n, width))
        return out

    @staticmethod
    def _kd(batch: list[dict], n: int, width: int) -> dict:
        k = max((len(b["topk_ids"][0]) for b in batch if b["topk_ids"]), default=1)
        kd_ids = torch.zeros((n, width, k), dtype=torch.long)
        kd_lp = torch.full((n, width, k), -1e4)
        kd_mask = torch.zeros((n, width), dtype=torch.bool)
        for i, b in enumerate(batch):
            m = len(b["topk_ids"])
            if m:
                start = b["n_prompt"] - 1  # logits here predict the first generated token
                kd_ids[i, start:start + m] = torch.tensor(b["topk_ids"], dtype=torch.long)
                kd_lp[i, start:start + m] = torch.tensor(b["topk_logprobs"], dtype=torch.float32)
                kd_mask[i, start:start + m] = True
        return {"kd_ids": kd_ids, "kd_logprobs": kd_lp, "kd_mask": kd_mask}


def length_grouped_batches(lengths: list[int], batch_size: int, gen: torch.Generator,
                           group: int = 64) -> list[list[int]]:
    """One epoch of batches (indices): shuffle, sort each run of `group` batches' worth by length, cut
    into batches, shuffle the batches. Padding (about a third of the compute with random batches on
    the demo task) nearly vanishes; the order of batches stays random, so no stretch of training sees
    only long (or only short) examples, as it would with batches taken in sorted order."""
    perm = torch.randperm(len(lengths), generator=gen).tolist()
    out = []
    for start in range(0, len(perm), batch_size * group):
        chunk = sorted(perm[start:start + batch_size * group], key=lengths.__getitem__)
        out += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [out[i] for i in torch.randperm(len(out), generator=gen).tolist()]


class LengthGroupedOrder(torch.utils.data.Sampler):
    """`length_grouped_batches` as the index order a `transformers.Trainer` (or any DataLoader of
    `batch_size`) cuts into batches: full batches first, a short one last, so every batch the loader
    cuts is one of them. Seeded by `seed` and the epoch (`set_epoch`, which the Trainer calls), so a
    resumed run sees the same batches."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        super().__init__()
        self.lengths, self.batch_size, self.seed, self.epoch = list(lengths), int(batch_size), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        grouped = length_grouped_batches(self.lengths, self.batch_size, gen)
        full = [b for b in grouped if len(b) == self.batch_size]
        return iter([i for b in full + [b for b in grouped if len(b) < self.batch_size] for i in b])


def batches(feats: list[dict], pad_id: int, batch_size: int):
    """Consecutive SFT batches of `feats` (no shuffling): for gradients and losses over a whole set."""
    collate = Collator(pad_id)
    for start in range(0, len(feats), batch_size):
        yield collate(feats[start:start + batch_size])
