"""Proxy students for capability-denying countermeasures (ads, poe, doge), and ADS's gradient.

A protection's `proxy=` names the defender's stand-in for a distilling student:
  - `distilled`   a `tiny` student, built with the teacher's tokenizer, briefly SFT-distilled on the
                  teacher's own raw answers (the task's train-split prompts, so never a distillation
                  or test problem), built once per (teacher, task) and cached: the demo's choice, since
                  an untrained proxy's gradient says nothing about what a student learns from the teacher
  - a preset      a freshly initialised preset model (`tiny`, ...), seed 0
  - a folder      a saved model
  - a hub id      a model in the local hub cache (a `.gguf` file, `smollm2`)
It must share the teacher's tokenizer. `proxy_gradient` is the gradient of the proxy's mean SFT
loss on held-out teacher traces (other train-split prompts), computed once per (teacher, proxy,
data, mode) and cached as safetensors: `ads:grad=token` averages the loss over all completion
tokens, `grad=sequence` over traces (each trace's mean first), as the reference code does.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from antidistill.watermark.ads import GRAD_MODES
from antidistill.watermark.errors import UserError

from ..batching import batches, record_features
from ..cache import build_once, cache_root, config_hash
from ..corpus import read_corpus
from ..models.folders import resolve_model_dir
from ..models.loader import check_model, load_model
from ..models.presets import PRESETS
from ..models.tokenizer import project_tokenizer, saved_tokenizer, tokenizer_fingerprint
from ..tasks.registry import parse_task
from ..training.distill import train_student
from .sample import SampleSettings, sample_plain

DISTILLED = "distilled"
PROXY_VERSION = 1
# Prompt draws of the train split that neither the demo teacher (seed 0) nor each other use.
PROXY_PROMPT_SEED, HELD_OUT_SEED = 1_000_003, 2_000_003


@dataclass(frozen=True)
class ProxyConfig:
    """The `distilled` proxy: how much teacher output it sees and how long it trains."""

    preset: str = "tiny"
    n_prompts: int = 1024
    steps: int = 300
    batch_size: int = 32
    max_new_tokens: int = 128
    seed: int = 0
    n_grad: int = 256  # held-out teacher traces for the ADS gradient


DEFAULT_PROXY = ProxyConfig()


def _teacher_key(teacher_name: str, tokenizer) -> dict:
    return {"teacher": teacher_name, "tokenizer": tokenizer_fingerprint(tokenizer)}


def _train_prompts(task, n: int, seed: int) -> list[str]:
    return [e.prompt for e in task.examples("train", n, seed=seed)]


def _teacher_traces(teacher, tokenizer, out: Path, prompts: list[str], cfg: ProxyConfig, seed: int,
                    progress: bool) -> Path:
    settings = SampleSettings(max_new_tokens=cfg.max_new_tokens, seed=seed, batch_size=64, shard_size=1024)
    sample_plain(teacher, tokenizer, out, prompts, settings, "proxy-data", progress)
    return out


def _task_key(task) -> dict:
    """The task in a proxy's cache key: absent for the demo suite (keys made before tasks stay valid)."""
    return {} if task.family == "demo" else {"task": task.key}


def distilled_proxy_dir(teacher_name: str, tokenizer, cfg: ProxyConfig | None = None, cache_dir=None,
                        task=None) -> Path:
    cfg = cfg or DEFAULT_PROXY
    key = {**_teacher_key(teacher_name, tokenizer), "proxy": asdict(cfg), "version": PROXY_VERSION,
           **_task_key(parse_task(task))}
    return cache_root(cache_dir) / "proxies" / f"distilled-{config_hash(key)}"


def load_proxy(name: str, teacher, tokenizer, teacher_name: str, *, cache_dir=None, progress: bool = True,
               cfg: ProxyConfig | None = None, task=None):
    """(proxy model in eval mode, a stable id of it for cache keys). `distilled` is a `cfg.preset`
    student built with the teacher's tokenizer (whatever the teacher) and SFT-distilled on the
    teacher's raw answers to `task`'s train-split prompts."""
    cfg, task = cfg or DEFAULT_PROXY, parse_task(task)
    if name == DISTILLED:
        target = distilled_proxy_dir(teacher_name, tokenizer, cfg, cache_dir, task)
        student = cfg.preset
        if tokenizer_fingerprint(project_tokenizer(cache_dir)) != tokenizer_fingerprint(tokenizer):
            student = f"{cfg.preset}:tokenizer={saved_tokenizer(tokenizer, cache_dir)}"

        def build(tmp: Path):
            corpus = _teacher_traces(teacher, tokenizer, tmp / "corpus",
                                     _train_prompts(task, cfg.n_prompts, PROXY_PROMPT_SEED + cfg.seed), cfg, cfg.seed,
                                     progress)
            train_student(student, corpus, tmp / "student", max_steps=cfg.steps, batch_size=cfg.batch_size,
                          seed=cfg.seed, save_steps=10_000, logging_steps=100, progress=progress,
                          cache_dir=cache_dir)

        if not target.is_dir() and progress:
            print(f"antidistill: distilling the proxy student (first use; cached in {target})", file=sys.stderr)
        build_once(target, build)
        model, tok = load_model(str(target / "student"), cache_dir=cache_dir)
        proxy_id = target.name
    elif name in PRESETS:
        model, tok = load_model(name, seed=0, cache_dir=cache_dir)
        proxy_id = f"preset-{name}-seed0"
    else:
        path = resolve_model_dir(name)
        if not path.is_dir():  # a hub id (or a .gguf file, smollm2): named by itself
            if name.startswith(("/", ".", "~")) and not name.endswith(".gguf"):
                raise UserError(f"proxy {name!r} is neither '{DISTILLED}', a preset ({', '.join(PRESETS)}) nor a "
                                "model folder (no such folder)")
            check_model(name, "proxy")
            model, tok = load_model(name, cache_dir=cache_dir)
            proxy_id = f"named-{name}"
            if tokenizer_fingerprint(tok) != tokenizer_fingerprint(tokenizer):
                raise UserError(f"proxy {name!r} uses another tokenizer than the teacher; a proxy must share the "
                                "teacher's tokenizer")
            return model.eval(), proxy_id
        model, tok = load_model(str(path), cache_dir=cache_dir)
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        digest = hashlib.sha256()
        for w in weights:
            digest.update(w.read_bytes())
        proxy_id = f"folder-{digest.hexdigest()[:16]}"
    if tokenizer_fingerprint(tok) != tokenizer_fingerprint(tokenizer):
        raise UserError(f"proxy {name!r} uses another tokenizer than the teacher; a proxy must share the teacher's "
                        "tokenizer (e.g. a preset when the teacher is 'demo', or a student distilled from it)")
    return model.eval(), proxy_id


def proxy_gradient(proxy, proxy_id: str, teacher, tokenizer, teacher_name: str, *, cache_dir=None,
                   progress: bool = True, cfg: ProxyConfig | None = None, mode: str = "token",
                   task=None) -> dict[str, torch.Tensor]:
    """Gradient of the proxy's mean SFT loss on held-out teacher traces (other train-split prompts of
    `task`), by parameter name; `mode` as in `sft_gradient`."""
    cfg, task = cfg or DEFAULT_PROXY, parse_task(task)
    _check_mode(mode)
    key = {**_teacher_key(teacher_name, tokenizer), "proxy": proxy_id, "n": cfg.n_grad, "seed": cfg.seed,
           "max_new_tokens": cfg.max_new_tokens, "version": PROXY_VERSION, **_task_key(task)}
    if mode != "token":  # the token mean's key predates the option and stays as it was
        key["mode"] = mode
    target = cache_root(cache_dir) / "proxies" / f"grad-{config_hash(key)}"

    def build(tmp: Path):
        corpus = _teacher_traces(teacher, tokenizer, tmp / "held-out",
                                 _train_prompts(task, cfg.n_grad, HELD_OUT_SEED + cfg.seed), cfg, cfg.seed + 1,
                                 progress)
        save_file(sft_gradient(proxy, corpus, tokenizer, mode=mode), str(tmp / "grad.safetensors"))

    build_once(target, build)
    return load_file(str(target / "grad.safetensors"))


def _check_mode(mode: str) -> None:
    if mode not in GRAD_MODES:
        raise UserError(f"ads gradient mode must be one of {', '.join(GRAD_MODES)}, got {mode!r}")


def sft_gradient(model, corpus, tokenizer, batch_size: int = 32, mode: str = "token") -> dict[str, torch.Tensor]:
    """d/dθ of the proxy's next-token loss on every completion token (and EOS) of `corpus`, averaged
    over all those tokens (`mode="token"`) or, per trace first, then over traces (`"sequence"`, the
    reference code's form: a short trace weighs as much as a long one).

    Both are one sum of per-token losses with fixed weights (1/total tokens, or 1/(traces * the
    trace's tokens)), so batches of any size add up to the same gradient.
    """
    return records_gradient(model, read_corpus(corpus).records, tokenizer, batch_size, mode)


def records_gradient(model, records: list[dict], tokenizer, batch_size: int = 32,
                     mode: str = "token") -> dict[str, torch.Tensor]:
    """`sft_gradient` of corpus records (`prompt_ids`, `completion_ids`, `stop`)."""
    _check_mode(mode)
    feats = record_features(records, tokenizer, max_len=model.config.max_position_embeddings)
    todo = list(batches(feats, tokenizer.pad_token_id, batch_size))
    total = sum(int((b["labels"][:, 1:] != -100).sum()) for b in todo)
    n_traces = sum(int((b["labels"][:, 1:] != -100).any(-1).sum()) for b in todo)
    device = next(model.parameters()).device
    model.zero_grad(set_to_none=True)
    for b in todo:
        labels = b["labels"][:, 1:].to(device)
        logits = model(input_ids=b["input_ids"].to(device), attention_mask=b["attention_mask"].to(device)).logits
        token_loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels.flatten(),
                                                       ignore_index=-100, reduction="none").view(labels.shape)
        scored = labels != -100
        if mode == "token":
            weight = scored / total
        else:
            weight = scored / (n_traces * scored.sum(-1, keepdim=True).clamp_min(1))
        (token_loss * weight).sum().backward()
    grad = {name: p.grad.detach().cpu().clone().contiguous() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return grad
