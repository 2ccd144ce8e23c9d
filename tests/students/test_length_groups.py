"""Length-grouped batches: every example once per epoch, batches of similar lengths in random order,
full batches first for a DataLoader, the same order after a resume, and the Trainer using it."""
import random

import pytest
import torch

from antidistill.students.batching import LengthGroupedOrder, length_grouped_batches


def _lengths(n=1000, seed=0):
    rng = random.Random(seed)
    return [rng.choice([12, 30, 55, 90]) + rng.randrange(8) for _ in range(n)]


def _padding(lengths, batches):
    executed = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - sum(lengths) / executed


def test_every_example_once_with_less_padding_than_random_batches():
    lengths = _lengths()
    batches = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(0), group=8)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    perm = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
    rand = [perm[i:i + 32] for i in range(0, len(perm), 32)]
    assert _padding(lengths, batches) < 0.5 * _padding(lengths, rand)


def test_batch_order_is_random_not_sorted():
    lengths = _lengths()
    batches = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(1), group=8)
    widths = [max(lengths[i] for i in b) for b in batches]
    assert widths != sorted(widths) and widths != sorted(widths, reverse=True)
    # no long run of one length class: the batches of a group are shuffled over the epoch
    first_half = {w // 10 for w in widths[: len(widths) // 2]}
    assert len(first_half) >= 3


@pytest.mark.parametrize("n", [1000, 1001, 31])
def test_order_cuts_into_the_grouped_batches(n):
    lengths = _lengths(n)
    order = LengthGroupedOrder(lengths, 32, seed=5)
    flat = list(order)
    assert sorted(flat) == list(range(n)) and len(order) == n
    cut = [flat[i:i + 32] for i in range(0, n, 32)]
    assert all(len(b) == 32 for b in cut[:-1])  # a DataLoader's batches are the grouped ones, a short one last
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in cut[:-1]]
    assert not spread or sorted(spread)[len(spread) // 2] <= 10


def test_same_seed_and_epoch_same_order_other_epoch_other_order():
    lengths = _lengths()
    a, b = LengthGroupedOrder(lengths, 32, seed=3), LengthGroupedOrder(lengths, 32, seed=3)
    assert list(a) == list(b)  # a resumed run sees the same batches
    b.set_epoch(1)
    assert list(a) != list(b)
    assert list(LengthGroupedOrder(lengths, 32, seed=4)) != list(a)


def test_trainer_uses_the_grouped_order_unless_asked_not_to(tmp_path):
    from antidistill.students.batching import Collator
    from antidistill.students.models.presets import build_model
    from antidistill.students.training.distill import build_trainer
    from antidistill.students.training.spec import TrainingSpec

    model, tok = build_model("tiny", seed=0)
    feats = [{"input_ids": list(range(1, 2 + k % 40)), "n_prompt": 1} for k in range(200)]
    for grouped, kind in ((True, LengthGroupedOrder), (False, torch.utils.data.RandomSampler)):
        spec = TrainingSpec("tiny", None, max_steps=2, batch_size=16, seed=7, group_by_length=grouped)
        trainer = build_trainer(spec, model, feats, Collator(tok.pad_token_id), tmp_path / str(grouped))
        sampler = trainer._get_train_sampler()
        assert isinstance(sampler, kind)
        if grouped:
            assert sampler.batch_size == 16 and sampler.seed == 7


def test_spec_refuses_a_non_boolean():
    from antidistill.students.training.spec import TrainingSpec
    from antidistill.watermark.errors import UserError

    with pytest.raises(UserError, match="group_by_length"):
        TrainingSpec("tiny", None, group_by_length="yes")
