"""The distillation losses and `DistillTrainer`, the `transformers.Trainer` that computes them.

- SFT: the model's own next-token loss (transformers normalises it by the tokens of the whole
  accumulated batch, `num_items_in_batch`).
- weighted SFT (strategic reweighting): sum_i w_i sum_t l_it / sum_i w_i n_i over the accumulated batch.
- logit KD: KL(teacher's stored top-k, renormalised || student), mean over a micro-batch's positions
  (no labels, so the Trainer averages the micro-batches' means).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from transformers import Trainer

from antidistill.watermark.errors import UserError

from ..batching import LengthGroupedOrder


def kd_loss(logits: torch.Tensor, kd_ids: torch.Tensor, kd_logprobs: torch.Tensor,
            kd_mask: torch.Tensor) -> torch.Tensor:
    """Mean KL(p_teacher top-k renormalised || q_student) over the positions in `kd_mask`."""
    logq = torch.log_softmax(logits[kd_mask].float(), dim=-1)  # [N, V]
    logp = torch.log_softmax(kd_logprobs[kd_mask], dim=-1)  # renormalise the top-k
    logq_k = logq.gather(-1, kd_ids[kd_mask])
    return (logp.exp() * (logp - logq_k)).sum(-1).mean()


def weighted_tokens(labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_i w_i n_i: the scored tokens of a batch, each example's counted `weights[i]` times."""
    return (weights * (labels[:, 1:] != -100).sum(1)).sum()


def weighted_sft_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                      denominator: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token loss with each example's tokens weighted by its `weights` entry: sum_i w_i sum_t l_it
    / `denominator` (default: this batch's sum_i w_i n_i, so with all weights 1, the usual token mean)."""
    target = labels[:, 1:]
    mask = target != -100
    lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -lp.gather(-1, target.clamp_min(0)[..., None])[..., 0] * mask
    w = weights.to(nll.device)
    if denominator is None:
        denominator = weighted_tokens(labels.to(nll.device), w)
    return (w * nll.sum(1)).sum() / denominator.to(nll.device).clamp_min(1e-12)


class Diverged(UserError):
    """The loss or the weights went non-finite: the run is worthless and leaves nothing behind."""


class DistillTrainer(Trainer):
    """A `transformers.Trainer` that owns the choice of loss per batch (SFT, weighted SFT, logit KD),
    the weighted token count of an accumulated batch, the refusal of a non-finite loss, and (with
    `group_by_length`) batches of similar lengths in random order."""

    def __init__(self, *args, group_by_length: bool = False, **kwargs):
        self.group_by_length = group_by_length
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        # The Trainer's own group_by_length takes a mega-batch's batches longest first, so on a task
        # whose skills differ in length every 50 steps run from one skill to another; ours shuffles them.
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_length or dataset is None:
            return super()._get_train_sampler(train_dataset)
        return LengthGroupedOrder([len(f["input_ids"]) for f in dataset], self.args.train_batch_size, self.args.seed)

    def get_batch_samples(self, epoch_iterator, num_batches: int, device):
        samples, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        if samples and "weights" in samples[0]:  # the weighted loss divides by sum_i w_i n_i instead
            num_items = sum(weighted_tokens(b["labels"], b["weights"]) for b in samples)
            if self.args.average_tokens_across_devices and self.args.world_size > 1:
                num_items = self.accelerator.gather(num_items.to(device)).sum()
        return samples, num_items

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "weights" in inputs:  # per-trace weights (strategic reweighting)
            weights = inputs.pop("weights")
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            loss = weighted_sft_loss(outputs.logits, inputs["labels"], weights, num_items_in_batch)
            if num_items_in_batch is not None and self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients; the sum is wanted
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


def check_finite(model) -> None:
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
