"""`sampling_log_probs` (the distribution keyed samplers draw from) against transformers' own warpers,
which `generate` applies to every row a processor leaves alone: bit for bit wherever the logits have no
ties at the nucleus boundary; with ties there, each keeps a valid nucleus but not always the same members
(transformers sorts ascending, we sort descending), which is why ours stays."""
import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from antidistill.watermark.processing import sampling_log_probs


def _transformers(scores, temperature, top_k, top_p):
    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return torch.log_softmax(warpers(None, scores.float()), dim=-1)


def _cases(ties: bool):
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        vocab = int(torch.randint(2, 60, (1,), generator=g))
        scores = torch.randn(4, vocab, generator=g) * 3
        if ties:
            scores = torch.round(scores)  # a handful of distinct values: ties everywhere
        for temperature in (0.7, 1.0, 1.3):
            for top_k in (0, 1, 3, vocab - 1, vocab, vocab + 2):  # off, greedy, the edges of the vocabulary
                for top_p in (1.0, 0.9, 0.5, 0.01):
                    yield scores, temperature, top_k, top_p


def test_bit_identical_to_transformers_without_ties():
    for scores, t, k, p in _cases(ties=False):
        assert torch.equal(sampling_log_probs(scores, t, k, p), _transformers(scores, t, k, p)), (t, k, p)


def test_with_ties_both_keep_a_valid_nucleus_and_top_k_agrees():
    differ = 0
    for scores, t, k, p in _cases(ties=True):
        ours, theirs = sampling_log_probs(scores, t, k, p), _transformers(scores, t, k, p)
        if p == 1.0:  # temperature and top-k alone: identical, ties included
            assert torch.equal(ours, theirs), (t, k)
            continue
        base = torch.softmax(_transformers(scores, t, k, 1.0), dim=-1)  # after temperature and top-k
        for lp in (ours, theirs):
            kept = torch.isfinite(lp)
            assert ((base * kept).sum(-1) >= p - 1e-6).all()  # the kept mass reaches top_p
            # nothing dropped is likelier than something kept
            assert (base.masked_fill(kept, 0).amax(-1) <= base.masked_fill(~kept, 2).amin(-1) + 1e-7).all()
        differ += not torch.equal(torch.isfinite(ours), torch.isfinite(theirs))
    assert differ > 0  # why ours stays: not bit-identical where tied logits straddle the boundary
