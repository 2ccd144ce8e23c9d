"""Build (once, cached) the DOGe-defended teacher: only lm_head fine-tuned against a frozen proxy.

Loss per batch of the teacher's SFT data (task-suite train split, a draw the demo teacher did not
use): mean token NLL - beta * mean token KL(softmax(z_T / 2) || softmax(z_P / 2)) over the
completion tokens. The demo teacher ties lm_head to the input embeddings; the defended copy
unties them, so its inputs are read exactly as before and only the output layer moves.
"""
from __future__ import annotations

import copy
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..batching import Collator, example_features
from ..cache import build_once, cache_root, config_hash
from ..models.folders import from_pretrained
from ..models.tokenizer import tokenizer_fingerprint
from ..tasks.registry import parse_task

DOGE_VERSION = 1
DOGE_DATA_SEED = 3_000_003


@dataclass(frozen=True)
class DogeConfig:
    """The DOGe defence's training recipe (steps, batch, lr, data size, seed): part of its cache key."""

    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    n_train: int = 4096
    seed: int = 0


def kl_half(z_t: torch.Tensor, z_p: torch.Tensor) -> torch.Tensor:
    """KL(softmax(z_t / 2) || softmax(z_p / 2)) per row, in nats."""
    log_t, log_p = torch.log_softmax(z_t.float() / 2, -1), torch.log_softmax(z_p.float() / 2, -1)
    return (log_t.exp() * (log_t - log_p)).sum(-1)


def doge_loss(teacher, proxy, ids, mask, labels, beta: float):
    """(total loss, SFT loss, KL) of one batch; positions predicting a completion token count."""
    z_t = teacher(input_ids=ids, attention_mask=mask).logits[:, :-1]
    with torch.no_grad():
        z_p = proxy(input_ids=ids, attention_mask=mask).logits[:, :-1]
    target = labels[:, 1:]
    keep = target != -100
    sft = torch.nn.functional.cross_entropy(z_t[keep].float(), target[keep])
    kl = kl_half(z_t[keep], z_p[keep]).mean()
    return sft - beta * kl, sft, kl


def untied_head_copy(model):
    """A copy of `model` whose lm_head is its own parameter and the only trainable one."""
    out = copy.deepcopy(model)
    head = out.get_output_embeddings()
    head.weight = torch.nn.Parameter(head.weight.detach().clone())
    out.config.tie_word_embeddings = False
    if hasattr(out.config, "get_text_config"):
        out.config.get_text_config().tie_word_embeddings = False
    for p in out.parameters():
        p.requires_grad_(False)
    head.weight.requires_grad_(True)
    return out


def doge_dir(teacher_name: str, tokenizer, beta: float, proxy_id: str, cfg: DogeConfig, cache_dir=None,
             task=None) -> Path:
    key = {"teacher": teacher_name, "tokenizer": tokenizer_fingerprint(tokenizer), "beta": beta, "proxy": proxy_id,
           "config": asdict(cfg), "version": DOGE_VERSION}
    task = parse_task(task)
    if task.family != "demo":  # keys made before tasks stay valid
        key["task"] = task.key
    return cache_root(cache_dir) / "teachers" / f"doge-{config_hash(key)}"


def train_doge(teacher, proxy, tokenizer, beta: float, cfg: DogeConfig, progress: bool = True, task=None):
    """(defended teacher, card): `cfg.steps` AdamW steps on lm_head only, on `task`'s train-split
    reference completions (the demo suite's traces by default)."""
    model = untied_head_copy(teacher).train()
    device = next(model.parameters()).device
    proxy = proxy.to(device).eval()
    collate = Collator(tokenizer.pad_token_id)
    data = example_features(tokenizer, parse_task(task).examples("train", cfg.n_train, seed=DOGE_DATA_SEED + cfg.seed))
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW([model.get_output_embeddings().weight], lr=cfg.lr, weight_decay=0.0)
    t0, log = time.perf_counter(), []
    order: list[int] = []
    for step in tqdm(range(cfg.steps), desc="doge teacher", unit="step", disable=not progress, file=sys.stderr):
        if len(order) < cfg.batch_size:
            order += torch.randperm(len(data), generator=gen).tolist()
        batch, order = order[:cfg.batch_size], order[cfg.batch_size:]
        b = collate([data[i] for i in batch])
        loss, sft, kl = doge_loss(model, proxy, b["input_ids"].to(device), b["attention_mask"].to(device),
                                  b["labels"].to(device), beta)
        sft, kl = sft.detach(), kl.detach()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == cfg.steps - 1:
            log.append({"step": step, "sft": round(sft.item(), 4), "kl": round(kl.item(), 4)})
    card = {"beta": beta, "config": asdict(cfg), "train_seconds": round(time.perf_counter() - t0, 1), "log": log}
    return model.eval(), card


def doge_teacher(teacher, tokenizer, teacher_name: str, beta: float, proxy, proxy_id: str, *, cache_dir=None,
                 progress: bool = True, cfg: DogeConfig | None = None, task=None):
    """The defended teacher for (teacher, beta, proxy), trained on first use and cached."""
    cfg = cfg or DEFAULT_DOGE
    target = doge_dir(teacher_name, tokenizer, beta, proxy_id, cfg, cache_dir, task)

    def build(tmp: Path):
        model, card = train_doge(teacher, proxy, tokenizer, beta, cfg, progress, task)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "doge_card.json").write_text(json.dumps(card, indent=2) + "\n")

    if not target.is_dir() and progress:
        print(f"antidistill: training the DOGe teacher (first use; cached in {target})", file=sys.stderr)
    return from_pretrained(str(build_once(target, build)))[0]


DEFAULT_DOGE = DogeConfig()
