"""Gradient accumulation: the loss of an accumulated batch is the loss of the whole batch."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments

from antidistill.students.batching import Collator
from antidistill.students.training.trainer import DistillTrainer, weighted_sft_loss


def _features(weighted: bool, n: int = 8) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    feats = []
    for i in range(n):
        length = int(torch.randint(5, 14, (1,), generator=g))  # unequal lengths: the token count matters
        f = {"input_ids": torch.randint(3, 32, (length,), generator=g).tolist(), "n_prompt": 2 + i % 3}
        if weighted:
            f["weight"] = float(torch.rand(1, generator=g)) * 3
        feats.append(f)
    return feats


def _gradient(feats, per_device: int, accumulation: int, tmp_path) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, max_position_embeddings=32, pad_token_id=0))
    args = TrainingArguments(output_dir=str(tmp_path / f"ga{accumulation}"), per_device_train_batch_size=per_device,
                             gradient_accumulation_steps=accumulation, use_cpu=True, report_to="none",
                             remove_unused_columns=False, label_names=["labels"])
    collate = Collator(pad_id=0)
    trainer = DistillTrainer(model=model, args=args, train_dataset=feats, data_collator=collate)
    trainer.current_gradient_accumulation_steps = accumulation  # what the training loop sets
    micro = iter([collate(feats[i:i + per_device]) for i in range(0, len(feats), per_device)])
    samples, num_items = trainer.get_batch_samples(micro, accumulation, torch.device("cpu"))
    for batch in samples:
        trainer.training_step(model, batch, num_items)
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("weighted", [False, True])
def test_accumulated_gradient_equals_the_full_batch_gradient(weighted, tmp_path):
    feats = _features(weighted)
    full = _gradient(feats, 8, 1, tmp_path)
    accumulated = _gradient(feats, 4, 2, tmp_path)
    for name, g in full.items():
        assert torch.allclose(accumulated[name], g, rtol=1e-4, atol=1e-6), name
    # and the check can fail: averaging the two halves' own means is a different gradient
    assert any(not torch.allclose(_gradient(feats[:4], 4, 1, tmp_path)[n] / 2 + _gradient(feats[4:], 4, 1, tmp_path)[n] / 2,
                                  g, rtol=1e-4, atol=1e-6) for n, g in full.items())


def test_weighted_loss_without_accumulation_is_the_batch_formula():
    """One batch: sum_i w_i sum_t l_it / sum_i w_i n_i, the denominator given or not (same bits)."""
    batch = Collator(pad_id=0)(_features(True))
    logits = torch.randn(*batch["input_ids"].shape, 32)
    own = weighted_sft_loss(logits, batch["labels"], batch["weights"])
    mask = batch["labels"][:, 1:] != -100
    nll = -torch.log_softmax(logits[:, :-1], -1).gather(-1, batch["labels"][:, 1:].clamp_min(0)[..., None])[..., 0]
    want = (batch["weights"][:, None] * nll * mask).sum() / (batch["weights"][:, None] * mask).sum()
    assert torch.allclose(own, want)
    given = weighted_sft_loss(logits, batch["labels"], batch["weights"],
                              (batch["weights"] * mask.sum(1)).sum())
    assert torch.equal(own, given)
