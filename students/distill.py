"""Distil a student on teacher corpora through `transformers.Trainer` (full or LoRA; SFT or logit KD).

- `sft`: next-token loss on the teacher's completions (prompt tokens masked) — the API attacker;
  records with a `weight` (strategic reweighting, students/attacks/reweight.py) weight their tokens.
- `logit-kd`: KL(teacher's stored top-k distribution, renormalised || student) at each generated
  position — the attacker who also gets log-probabilities.
- A mixture takes a fraction `mix` of its examples from a second corpus (protected data diluted in
  raw data, say), preferring prompts the first corpus does not already contribute.

The output folder holds `checkpoints/` (resumed automatically when the same command is rerun after a
kill), `model/` (the final model, LoRA merged in, with its tokenizer; renamed into place only when
complete) and `train_manifest.json` (what was trained on, losses, throughput).
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from antidistill.watermark.errors import UserError, atomic_write, output_lock
from antidistill.watermark.vocab import output_vocab_size

from .cache import check_out_dir, ensure_out_dir
from .corpus import read_corpus
from .models import PRESETS, count_parameters, load_model, resolve_device
from .sampling import encode_prompts
from .tokenizer import tokenizer_fingerprint

MODES = ("sft", "logit-kd")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PLAN_FILE = "train_plan.json"
MANIFEST_FILE = "train_manifest.json"


# ---------------------------------------------------------------- options


def parse_lora(spec: str | None) -> dict | None:
    """`r=16,alpha=32[,dropout=0.05][,targets=q_proj+v_proj]` -> LoRA settings (None: full fine-tuning)."""
    if spec is None:
        return None
    out = {"r": 16, "alpha": 32.0, "dropout": 0.0, "targets": list(LORA_TARGETS)}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, eq, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not eq or not raw:
            raise UserError(f"--lora: {item!r} must look like name=value (e.g. r=16,alpha=32)")
        if name not in ("r", "alpha", "dropout", "targets"):
            raise UserError(f"--lora: unknown setting {name!r}; valid: r, alpha, dropout, targets")
        try:
            if name == "r":
                out["r"] = int(raw)
                if out["r"] <= 0:
                    raise ValueError
            elif name == "alpha":
                out["alpha"] = float(raw)
                if not 0 < out["alpha"] <= 1e4:
                    raise ValueError
            elif name == "dropout":
                out["dropout"] = float(raw)
                if not 0 <= out["dropout"] < 1:
                    raise ValueError
            else:
                out["targets"] = [t for t in raw.split("+") if t]
        except ValueError:  # a UserError is a ValueError too: none is raised inside this block
            raise UserError(f"--lora: {name}={raw!r} is out of range (r positive integer, 0 < alpha <= 1e4, "
                            "0 <= dropout < 1)") from None
    return out


def default_lr(from_scratch: bool, lora: dict | None) -> float:
    """Learning rates that work for these short runs: high from scratch, low for full fine-tuning."""
    if lora:
        return 2e-3
    return 3e-3 if from_scratch else 3e-4


# ---------------------------------------------------------------- data


def mix_records(main: list[dict], other: list[dict] | None, mix: float | None, seed: int) -> list[dict]:
    """The training records: all of `main`, or len(main) records with a fraction `mix` from `other`.

    The records taken from `other` are a seeded sample; `main` then contributes the same number of
    records minus those, preferring prompt ids that `other` did not contribute, so a raw and a
    protected corpus of the same prompts never teach the same prompt twice.
    """
    if other is None:
        if mix is not None:
            raise UserError("--mix needs a second --corpus (the one mixed in)")
        return list(main)
    if mix is None:
        raise UserError("two corpora need --mix RHO: the fraction of examples taken from the second")
    if not 0.0 <= mix <= 1.0:
        raise UserError(f"--mix must lie in [0, 1], got {mix}")
    n = len(main)
    k = round(mix * n)
    if k > len(other):
        raise UserError(f"--mix {mix} needs {k} records from the second corpus but it holds {len(other)}")
    rng = random.Random(f"antidistill/mix/{seed}")
    taken = rng.sample(range(len(other)), k)
    picked = [other[i] for i in taken]
    used = {other[i]["id"] for i in taken}
    fresh = [r for r in main if r["id"] not in used]
    stale = [r for r in main if r["id"] in used]
    rng.shuffle(fresh)
    rng.shuffle(stale)
    out = picked + (fresh + stale)[:n - k]
    rng.shuffle(out)
    return out


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


def _features(records: list[dict], tokenizer, mode: str, retokenize: bool, max_len: int,
              vocab: int | None = None) -> list[dict]:
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
            if "topk_ids" not in r:
                raise UserError("--mode logit-kd needs a corpus generated with --topk-logprobs K")
            if vocab is not None and not _topk_ok(r, vocab):
                raise UserError(f"record {r.get('id')!r}: `topk_ids` / `topk_logprobs` must be matching [n, k] lists "
                                f"of token ids below {vocab} and log-probabilities")
            n_kd = max(0, min(len(r["topk_ids"]), len(ids) - len(p) + 1))
            f["topk_ids"] = r["topk_ids"][:n_kd]
            f["topk_logprobs"] = r["topk_logprobs"][:n_kd]
        feats.append(f)
    return feats


class _ListDataset(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class Collator:
    """Right-pads a batch; `labels` mask the prompt; KD targets sit at the positions predicting
    each generated token. Counts the real (non-pad) tokens it hands out, for tokens/s."""

    def __init__(self, pad_id: int, kd: bool):
        self.pad_id, self.kd, self.n_tokens = pad_id, kd, 0

    def __call__(self, batch):
        width = max(len(b["input_ids"]) for b in batch)
        n = len(batch)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        labels = torch.full((n, width), -100, dtype=torch.long)
        for i, b in enumerate(batch):
            t = torch.tensor(b["input_ids"], dtype=torch.long)
            ids[i, :len(t)] = t
            mask[i, :len(t)] = 1
            labels[i, b["n_prompt"]:len(t)] = t[b["n_prompt"]:]
        self.n_tokens += int(mask.sum())
        out = {"input_ids": ids, "attention_mask": mask}
        if not self.kd:
            out["labels"] = labels
            if any("weight" in b for b in batch):
                out["weights"] = torch.tensor([b.get("weight", 1.0) for b in batch], dtype=torch.float32)
            return out
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
        out.update(kd_ids=kd_ids, kd_logprobs=kd_lp, kd_mask=kd_mask)
        return out


def kd_loss(logits: torch.Tensor, kd_ids: torch.Tensor, kd_logprobs: torch.Tensor,
            kd_mask: torch.Tensor) -> torch.Tensor:
    """Mean KL(p_teacher top-k renormalised || q_student) over the positions in `kd_mask`."""
    logq = torch.log_softmax(logits[kd_mask].float(), dim=-1)  # [N, V]
    logp = torch.log_softmax(kd_logprobs[kd_mask], dim=-1)  # renormalise the top-k
    logq_k = logq.gather(-1, kd_ids[kd_mask])
    return (logp.exp() * (logp - logq_k)).sum(-1).mean()


def weighted_sft_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Next-token loss with each example's tokens weighted by its `weights` entry: sum_i w_i sum_t l_it
    / sum_i w_i n_i (with all weights 1, the usual token mean)."""
    target = labels[:, 1:]
    mask = target != -100
    lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -lp.gather(-1, target.clamp_min(0)[..., None])[..., 0] * mask
    w = weights.to(nll.device)
    return (w * nll.sum(1)).sum() / (w * mask.sum(1)).sum().clamp_min(1e-12)


class Diverged(UserError):
    """The loss or the weights went non-finite: the run is worthless and leaves nothing behind."""


class DistillTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "weights" in inputs:  # per-trace weights (strategic reweighting)
            weights = inputs.pop("weights")
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            loss = weighted_sft_loss(outputs.logits, inputs["labels"], weights)
            res = (loss, outputs) if return_outputs else loss
        elif "kd_ids" not in inputs:
            res = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        else:
            kd = {k: inputs.pop(k) for k in ("kd_ids", "kd_logprobs", "kd_mask")}
            outputs = model(**inputs)
            loss = kd_loss(outputs.logits, **kd)
            res = (loss, outputs) if return_outputs else loss
        loss = res[0] if return_outputs else res
        if not torch.isfinite(loss.detach()).all():  # one sync per step: cheaper than a NaN model
            raise Diverged(f"training diverged at step {self.state.global_step + 1}: the loss is {loss.item()}; "
                           "lower --lr (or LoRA alpha) and rerun")
        return res


def _check_finite(model) -> None:
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise Diverged(f"training diverged: {len(bad)} weight tensors hold NaN or inf (first: {bad[0]}); "
                       "lower --lr (or LoRA alpha) and rerun")


def complete_checkpoints(folder: Path) -> list[Path]:
    """Finished checkpoints, oldest first; incomplete ones (a kill while saving) are deleted.

    The Trainer writes trainer_state.json last, so a checkpoint counts once that file parses and
    the weights are there; anything else would make `resume_from_checkpoint` fail on every rerun.
    """
    done = []
    for ck in folder.glob("checkpoint-*") if folder.is_dir() else []:
        try:
            step = int(ck.name.split("-")[-1])
            json.loads((ck / "trainer_state.json").read_text())
            ok = any((ck / w).is_file() for w in ("model.safetensors", "adapter_model.safetensors"))
        except (ValueError, OSError):
            ok = False
        if ok:
            done.append((step, ck))
        else:
            shutil.rmtree(ck, ignore_errors=True)
    return [ck for _, ck in sorted(done)]


class _Losses(TrainerCallback):
    def __init__(self):
        self.losses: list[tuple[int, float]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append((state.global_step, float(logs["loss"])))


# ---------------------------------------------------------------- training


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is unreadable ({type(err).__name__}); delete the output folder and rerun") from None


def _corpus_summary(c) -> dict:
    m = c.manifest
    return {"path": str(c.path), "teacher": m.get("teacher"), "protection": m.get("protection"),
            "key_fingerprint": m.get("key_fingerprint"), "records": len(c),
            "tokenizer_fingerprint": m.get("tokenizer_fingerprint")}


def train_student(student: str, corpus, out, *, mix_corpus=None, mix: float | None = None, mode: str = "sft",
                  lora: str | dict | None = None, epochs: float = 1.0, max_steps: int | None = None,
                  lr: float | None = None, batch_size: int = 16, seed: int = 0, save_steps: int = 200,
                  retokenize: bool = False, logging_steps: int = 10, progress: bool = True,
                  cache_dir=None, device: str | None = None) -> dict:
    """Distil `student` (preset, 'demo', model folder or hub id) on `corpus`; returns the manifest.

    Rerunning with the same arguments after a kill resumes from the last checkpoint; a finished
    output folder is returned as is.
    """
    if mode not in MODES:
        raise UserError(f"unknown --mode {mode!r}; valid modes: {', '.join(MODES)}")
    if mode == "logit-kd" and retokenize:
        raise UserError("--retokenize works only with --mode sft: stored top-k ids belong to the teacher's vocabulary")
    lora_cfg = parse_lora(lora) if isinstance(lora, (str, type(None))) else dict(lora)
    for name, value in (("epochs", epochs), ("batch-size", batch_size), ("save-steps", save_steps)):
        if not value > 0:
            raise UserError(f"--{name} must be positive, got {value}")
    if not (epochs <= 1000 and (max_steps is None or (isinstance(max_steps, int) and max_steps > 0))):
        raise UserError(f"--epochs must lie in (0, 1000] and --max-steps be a positive integer, got {epochs}, "
                        f"{max_steps}")
    if lr is not None and not 0 < lr <= 1:
        raise UserError(f"--lr must be a finite number with 0 < lr <= 1, got {lr}")
    resolve_device(device)
    out = Path(out)
    check_out_dir(out)
    # A second training into this folder is refused while this one runs. Under data-parallel training every
    # process trains into the same folder: the first one (rank 0, which writes the model) holds the lock.
    first = int(os.environ.get("RANK", "0")) == 0
    with output_lock(out, "student folder") if first else contextlib.nullcontext():
        main = read_corpus(corpus)
        other = read_corpus(mix_corpus) if mix_corpus is not None else None
        records = mix_records(main.records, other.records if other else None, mix, seed)
        if not records:
            raise UserError(f"corpus {corpus} holds no records")

        model, tokenizer = load_model(student, seed=seed, cache_dir=cache_dir)
        fp = tokenizer_fingerprint(tokenizer)
        for c in (main, other):
            if c is not None and c.manifest.get("tokenizer_fingerprint") != fp and not retokenize:
                raise UserError(f"corpus {c.path} was tokenized with tokenizer "
                                f"{c.manifest.get('tokenizer_fingerprint')} "
                                f"but student {student!r} uses {fp}; pick a student with the teacher's tokenizer"
                                + (", or pass --retokenize (sft only)" if mode == "sft" else ""))
        if not retokenize:
            vocab = output_vocab_size(model)
            for c in (main, other):
                top = max((max(r["prompt_ids"] + r["completion_ids"], default=0) for r in c.records), default=0) \
                    if c is not None else 0
                if top >= vocab:
                    raise UserError(f"corpus {c.path} holds token id {top} but student {student!r} has a vocabulary "
                                    f"of {vocab}")
        from_scratch = student in PRESETS
        lr = lr if lr is not None else default_lr(from_scratch, lora_cfg)
        plan = {"student": student, "corpus": _corpus_summary(main),
                "mix_corpus": _corpus_summary(other) if other else None, "mix": mix, "mode": mode, "lora": lora_cfg,
                "epochs": epochs, "max_steps": max_steps, "lr": lr, "batch_size": batch_size, "seed": seed,
                "retokenize": retokenize}
        plan_path = out / PLAN_FILE
        finished = (out / MANIFEST_FILE).is_file() and (out / "model" / "config.json").is_file()
        ckpts = complete_checkpoints(out / "checkpoints")
        if plan_path.is_file() and (finished or ckpts):  # a plan without progress binds nothing
            old = _read_json(plan_path)
            diffs = [k for k in plan if old.get(k) != plan[k]]
            if diffs:
                raise UserError(f"{out} holds a training run with other settings ({', '.join(diffs)} differ); use a "
                                "new --out folder or delete this one")
        if finished:
            return _read_json(out / MANIFEST_FILE)

        max_len = getattr(model.config, "max_position_embeddings", 2048) or 2048
        feats = _features(records, tokenizer, mode, retokenize, max_len, vocab=output_vocab_size(model))
        if lora_cfg:
            from peft import LoraConfig, get_peft_model

            present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
            targets = [t for t in lora_cfg["targets"] if t in present]
            if not targets:
                raise UserError(f"--lora targets {'+'.join(lora_cfg['targets'])} match no module of {student!r}")
            model = get_peft_model(model, LoraConfig(r=lora_cfg["r"], lora_alpha=lora_cfg["alpha"],
                                                     lora_dropout=lora_cfg["dropout"], target_modules=targets,
                                                     task_type="CAUSAL_LM"))
        n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        use_cpu = resolve_device(device).type == "cpu"
        ensure_out_dir(out)
        args = TrainingArguments(
            output_dir=str(out / "checkpoints"), per_device_train_batch_size=batch_size, num_train_epochs=epochs,
            max_steps=max_steps if max_steps else -1, learning_rate=lr, lr_scheduler_type="cosine",
            warmup_steps=0.05, weight_decay=0.01, max_grad_norm=1.0, logging_steps=logging_steps,
            save_strategy="steps", save_steps=save_steps, save_total_limit=2, seed=seed, data_seed=seed,
            report_to="none", disable_tqdm=not progress, remove_unused_columns=False, use_cpu=use_cpu,
            dataloader_num_workers=0, label_names=["labels"], ddp_find_unused_parameters=False)
        collator = Collator(tokenizer.pad_token_id, kd=mode == "logit-kd")
        losses = _Losses()
        trainer = DistillTrainer(model=model, args=args, train_dataset=_ListDataset(feats), data_collator=collator,
                                 callbacks=[losses])
        if not progress:  # keep stdout for the one-line result
            trainer.remove_callback(PrinterCallback)
            trainer.remove_callback(ProgressCallback)
        with atomic_write(plan_path) as fh:
            json.dump(plan, fh, indent=2)
        t0 = time.perf_counter()
        try:
            result = trainer.train(resume_from_checkpoint=str(ckpts[-1]) if ckpts else None)
            final = model.merge_and_unload() if lora_cfg else model
            _check_finite(final)
        except Diverged:  # its checkpoints would only diverge again; a corrected command starts clean
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
            plan_path.unlink(missing_ok=True)
            raise
        except BaseException:
            if not complete_checkpoints(out / "checkpoints"):
                plan_path.unlink(missing_ok=True)
            raise
        seconds = time.perf_counter() - t0

        # Data-parallel (`accelerate launch ... train`): every process trained the same weights; one writes them.
        if not trainer.is_world_process_zero():
            trainer.accelerator.wait_for_everyone()
            return json.loads((out / MANIFEST_FILE).read_text())
        tmp = Path(tempfile.mkdtemp(prefix=".model.", dir=out))
        try:
            final.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            if (out / "model").exists():
                shutil.rmtree(out / "model")
            os.rename(tmp, out / "model")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        manifest = {
            **plan, "n_examples": len(feats), "n_parameters": count_parameters(final), "n_trainable": n_trainable,
            "global_step": trainer.state.global_step, "resumed_from": ckpts[-1].name if ckpts else None,
            "train_loss": round(float(result.training_loss), 5), "losses": losses.losses,
            "train_seconds": round(seconds, 2), "tokens_this_run": collator.n_tokens,
            "tokens_per_second": round(collator.n_tokens / seconds, 1) if seconds > 0 else None,
            "tokenizer_fingerprint": fp, "torch": torch.__version__,
        }
        manifest["world_size"] = trainer.args.world_size
        with atomic_write(out / MANIFEST_FILE) as fh:
            json.dump(manifest, fh, indent=2)
        trainer.accelerator.wait_for_everyone()
        return manifest
