"""Same bits on CUDA as on CPU (skipped where no GPU is present; run on a GPU machine)."""
import pytest
import torch

from antidistill.watermark import Key, parse_protection
from antidistill.watermark.hashing import KeyedHash

from .helpers import SPECS
from .test_hashing import GOLDEN_CASES, GOLDEN_KEY, GOLDEN_PRF

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_golden_vectors_on_cuda():
    h = KeyedHash(GOLDEN_KEY, "kgw/left")
    for (context, token), want in zip(GOLDEN_CASES, GOLDEN_PRF):
        ctx = torch.tensor([context], dtype=torch.int64, device="cuda").reshape(1, len(context))
        assert int(h.prf(ctx, torch.tensor([token], device="cuda"))[0]) == want


@cuda
@pytest.mark.parametrize("spec", SPECS)
def test_processor_and_detector_match_cpu(spec):
    key, vocab = Key(b"device"), 49152
    protection = parse_protection(spec)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (16, 12), generator=gen)
    scores = torch.randn(16, vocab, generator=gen)
    det = protection.detector(key)
    context = ids[:, ids.shape[1] - det.h:].repeat_interleave(64, 0)
    tokens = torch.randint(0, vocab, (16 * 64,), generator=gen)
    cpu_words = det.prf_inputs(context, tokens)  # numpy uint32 path
    assert cpu_words.tolist() == det.prf_inputs(context.cuda(), tokens.cuda()).tolist()  # torch int64 path
    proc = protection.processor(key, vocab)
    if protection.scheme in ("kgw", "unigram"):  # deterministic: identical outputs
        assert torch.equal(proc(ids, scores), proc(ids.cuda(), scores.cuda()).cpu())
    else:  # the keyed per-candidate values agree bit for bit
        assert proc.window_prf(ids).tolist() == proc.window_prf(ids.cuda()).tolist()
