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
from transformers import TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from antidistill.watermark.errors import UserError, atomic_write, output_lock
from antidistill.watermark.vocab import output_vocab_size

from ..batching import Collator, record_features
from ..cache import check_out_dir, ensure_out_dir
from ..corpus import read_corpus
from ..models.folders import resolve_device
from ..models.loader import load_model
from ..models.presets import count_parameters
from ..models.tokenizer import tokenizer_fingerprint
from .lora import lora_config
from .spec import TrainingSpec
from .trainer import Diverged, DistillTrainer, check_finite, complete_checkpoints

PLAN_FILE = "train_plan.json"
MANIFEST_FILE = "train_manifest.json"


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


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is unreadable ({type(err).__name__}); delete the output folder and rerun") from None


def train_student(student: str, corpus, out, *, progress: bool = True, cache_dir=None, device: str | None = None,
                  **settings) -> dict:
    """Distil `student` (preset, 'demo', model folder or hub id) on `corpus`; returns the manifest.

    `settings` are the fields of `TrainingSpec` (mix_corpus, mix, mode, lora, epochs, max_steps, lr,
    batch_size, seed, save_steps, retokenize, logging_steps, group_by_length), validated before
    anything is read.
    Rerunning with the same arguments after a kill resumes from the last checkpoint; a finished
    output folder is returned as is.
    """
    spec = TrainingSpec(student, corpus, **settings)
    resolve_device(device)
    out = Path(out)
    check_out_dir(out)
    # A second training into this folder is refused while this one runs. Under data-parallel training every
    # process trains into the same folder: the first one (rank 0, which writes the model) holds the lock.
    first = int(os.environ.get("RANK", "0")) == 0
    with output_lock(out, "student folder") if first else contextlib.nullcontext():
        return _Run(spec, out, progress, cache_dir, device).train()


def build_trainer(spec: TrainingSpec, model, feats: list[dict], collator: Collator, out: Path, *,
                  progress: bool = False, device: str | None = None) -> DistillTrainer:
    """The Trainer every student trains with (train_student; the training bench times this one)."""
    args = TrainingArguments(
        output_dir=str(Path(out) / "checkpoints"), per_device_train_batch_size=spec.batch_size,
        num_train_epochs=spec.epochs, max_steps=spec.max_steps if spec.max_steps else -1,
        learning_rate=spec.learning_rate, lr_scheduler_type="cosine", warmup_steps=0.05, weight_decay=0.01,
        max_grad_norm=1.0, logging_steps=spec.logging_steps, save_strategy="steps", save_steps=spec.save_steps,
        save_total_limit=2, seed=spec.seed, data_seed=spec.seed, report_to="none", disable_tqdm=not progress,
        remove_unused_columns=False, use_cpu=resolve_device(device).type == "cpu",
        dataloader_num_workers=0, label_names=["labels"], ddp_find_unused_parameters=False)
    trainer = DistillTrainer(model=model, args=args, train_dataset=feats, data_collator=collator,
                             group_by_length=spec.group_by_length)
    if not progress:  # keep stdout for the one-line result
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    return trainer


class _Run:
    """Owns one training run in its folder: the corpora and student it loads, the plan that binds
    the folder (and what an earlier run there left: checkpoints, a finished model), the Trainer, and
    the final save of model and manifest."""

    def __init__(self, spec: TrainingSpec, out: Path, progress: bool, cache_dir, device):
        self.spec, self.out, self.progress, self.cache_dir, self.device = spec, out, progress, cache_dir, device
        self.main = read_corpus(spec.corpus)
        self.other = read_corpus(spec.mix_corpus) if spec.mix_corpus is not None else None
        self.records = mix_records(self.main.records, self.other.records if self.other else None, spec.mix, spec.seed)
        if not self.records:
            raise UserError(f"corpus {spec.corpus} holds no records")
        self.model, self.tokenizer = load_model(spec.student, seed=spec.seed, cache_dir=cache_dir)
        self.fp = tokenizer_fingerprint(self.tokenizer)
        self.retokenize = self._check_corpora()
        self.plan = {**spec.plan(self.main, self.other), "retokenize": self.retokenize}

    def _check_corpora(self) -> bool:
        """Whether the texts are re-encoded with the student's tokenizer: as asked, or (not asked) when a
        corpus was tokenized by another tokenizer (cross-tokenizer distillation is SFT on text)."""
        spec = self.spec
        other = [c for c in (self.main, self.other) if c is not None
                 and c.manifest.get("tokenizer_fingerprint") != self.fp]
        if other and spec.mode == "logit-kd":
            raise UserError(f"logit KD needs the teacher's vocabulary, but corpus {other[0].path} was tokenized with "
                            f"tokenizer {other[0].manifest.get('tokenizer_fingerprint')} and student {spec.student!r} "
                            f"uses {self.fp}; use --mode sft (the texts retokenized) or a student with the teacher's "
                            "tokenizer")
        if other and spec.retokenize is False:
            raise UserError(f"corpus {other[0].path} was tokenized with tokenizer "
                            f"{other[0].manifest.get('tokenizer_fingerprint')} but student {spec.student!r} uses "
                            f"{self.fp}; drop --no-retokenize (sft on the retokenized texts) or pick a student with "
                            "the teacher's tokenizer")
        if spec.retokenize or other:
            return True
        vocab = output_vocab_size(self.model)
        for c in (self.main, self.other):
            top = max((max(r["prompt_ids"] + r["completion_ids"], default=0) for r in c.records), default=0) \
                if c is not None else 0
            if top >= vocab:
                raise UserError(f"corpus {c.path} holds token id {top} but student {spec.student!r} has a vocabulary "
                                f"of {vocab}")
        return False

    def _bind(self) -> tuple[bool, list[Path]]:
        """(finished already, complete checkpoints); refuses a folder that holds another plan's progress."""
        finished = (self.out / MANIFEST_FILE).is_file() and (self.out / "model" / "config.json").is_file()
        ckpts = complete_checkpoints(self.out / "checkpoints")
        plan_path = self.out / PLAN_FILE
        if plan_path.is_file() and (finished or ckpts):  # a plan without progress binds nothing
            old = _read_json(plan_path)
            diffs = [k for k in self.plan if old.get(k) != self.plan[k]]
            if diffs:
                raise UserError(f"{self.out} holds a training run with other settings ({', '.join(diffs)} differ); "
                                "use a new --out folder or delete this one")
        return finished, ckpts

    def train(self) -> dict:
        finished, ckpts = self._bind()
        if finished:
            return _read_json(self.out / MANIFEST_FILE)
        spec, plan_path = self.spec, self.out / PLAN_FILE
        max_len = getattr(self.model.config, "max_position_embeddings", 2048) or 2048
        feats = record_features(self.records, self.tokenizer, spec.mode, self.retokenize, max_len,
                                vocab=output_vocab_size(self.model))
        if spec.lora:
            from peft import get_peft_model  # heavy; full fine-tuning never needs it

            # LoRA's A matrices draw from torch's global generator: seeded here, or a student's
            # init (and its audit) would depend on what the process ran before it
            torch.manual_seed(spec.seed)
            self.model = get_peft_model(self.model, lora_config(spec.lora, self.model, spec.student))
        n_trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        ensure_out_dir(self.out)
        collator = Collator(self.tokenizer.pad_token_id, kd=spec.mode == "logit-kd")
        trainer = build_trainer(spec, self.model, feats, collator, self.out, progress=self.progress,
                                device=self.device)
        with atomic_write(plan_path) as fh:
            json.dump(self.plan, fh, indent=2)
        t0 = time.perf_counter()
        try:
            result = trainer.train(resume_from_checkpoint=str(ckpts[-1]) if ckpts else None)
            final = self.model.merge_and_unload() if spec.lora else self.model
            check_finite(final)
        except Diverged:  # its checkpoints would only diverge again; a corrected command starts clean
            shutil.rmtree(self.out / "checkpoints", ignore_errors=True)
            plan_path.unlink(missing_ok=True)
            raise
        except BaseException:
            if not complete_checkpoints(self.out / "checkpoints"):
                plan_path.unlink(missing_ok=True)
            raise
        seconds = time.perf_counter() - t0
        # Data-parallel (`accelerate launch ... train`): every process trained the same weights; one writes them.
        if not trainer.is_world_process_zero():
            trainer.accelerator.wait_for_everyone()
            return json.loads((self.out / MANIFEST_FILE).read_text())
        self._save_model(final)
        manifest = {
            **self.plan, "n_examples": len(feats), "n_parameters": count_parameters(final),
            "n_trainable": n_trainable, "global_step": trainer.state.global_step,
            "resumed_from": ckpts[-1].name if ckpts else None, "train_loss": round(float(result.training_loss), 5),
            # The Trainer's own log (restored from the checkpoint on a resume): every logged loss of the run.
            "losses": [(e["step"], float(e["loss"])) for e in trainer.state.log_history if "loss" in e],
            "train_seconds": round(seconds, 2), "tokens_this_run": collator.n_tokens,
            "tokens_per_second": round(collator.n_tokens / seconds, 1) if seconds > 0 else None,
            "tokenizer_fingerprint": self.fp, "torch": torch.__version__, "world_size": trainer.args.world_size,
        }
        with atomic_write(self.out / MANIFEST_FILE) as fh:
            json.dump(manifest, fh, indent=2)
        trainer.accelerator.wait_for_everyone()
        return manifest

    def _save_model(self, final) -> None:
        """`model/` (weights and tokenizer), renamed into place only when complete."""
        tmp = Path(tempfile.mkdtemp(prefix=".model.", dir=self.out))
        try:
            final.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            if (self.out / "model").exists():
                shutil.rmtree(self.out / "model")
            os.rename(tmp, self.out / "model")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
