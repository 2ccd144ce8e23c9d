"""Capability-denying countermeasures as protections: temperature (and, below, poe/ads)."""
import torch

from antidistill.watermark import Key, UserError, parse_protection

from .conftest import generate


def test_countermeasures_have_no_detector():
    for spec in ("temperature:t=1.5", "trace:keep=answer"):
        p = parse_protection(spec)
        assert not p.has_detector and not p.needs_key and p.extra_forwards == 0
        try:
            p.detector(Key(b"k"))
        except UserError as err:
            assert "has no detector" in str(err)
        else:
            raise AssertionError(spec)


def test_temperature_is_generate_at_that_temperature(tiny_lm):
    prompts = torch.randint(3, 1000, (3, 6), generator=torch.Generator().manual_seed(0))
    proc = parse_protection("temperature:t=1.7").processor(None, 1000)
    ours = generate(tiny_lm, prompts, proc, new_tokens=30, seed=5)
    torch.manual_seed(5)
    out = tiny_lm.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True, top_k=0,
                           temperature=1.7, max_new_tokens=30, min_new_tokens=30, eos_token_id=None,
                           pad_token_id=0)
    assert torch.equal(ours, out[:, prompts.shape[1]:])
    assert not torch.equal(ours, generate(tiny_lm, prompts, None, new_tokens=30, seed=5))


def test_trace_acts_on_text_not_logits():
    p = parse_protection("trace:keep=results")
    assert p.acts_on == "text" and p.processor(None, 10) is None
