"""Capability-denying countermeasures as protections: temperature (and, below, poe/ads)."""
import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from antidistill.watermark import Key, UserError, parse_protection
from antidistill.watermark.stepwise import StepwiseModel

from .conftest import VOCAB, generate


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


# ---------------------------------------------------------------- proxies: poe and ads


@pytest.fixture(scope="module")
def proxy():
    torch.manual_seed(99)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(10.0)
    return model


def held_out_gradient(model, seed=0):
    """The gradient of the model's mean next-token loss on random 'held-out' text."""
    ids = torch.randint(3, VOCAB, (4, 12), generator=torch.Generator().manual_seed(seed))
    model.zero_grad()
    model(input_ids=ids, labels=ids).loss.backward()
    grad = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad()
    return grad


def prompts_of(n, width, seed=0):
    return torch.randint(3, VOCAB, (n, width), generator=torch.Generator().manual_seed(seed))


def test_stepwise_cache_matches_full_forward_and_ignores_left_padding(proxy):
    stream = StepwiseModel(proxy, VOCAB)
    ids = prompts_of(2, 9)
    ids[1, :4] = 0  # row 1 is a 5-token prompt, left-padded
    for t in range(9, 14):
        got = stream(ids)
        with torch.no_grad():
            want0 = proxy(input_ids=ids[:1]).logits[0, -1]
            want1 = proxy(input_ids=ids[1:, 4:]).logits[0, -1]  # the same row without padding
        torch.testing.assert_close(got[0], want0, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got[1], want1, atol=1e-4, rtol=1e-4)
        ids = torch.cat([ids, prompts_of(2, 1, seed=t)], dim=1)
    assert stream._cache.get_seq_length() == 13  # one token per step after the prefill


def test_poe_gamma_zero_is_plain_sampling_and_mixes_logits(tiny_lm, proxy):
    prompts = prompts_of(3, 6)
    plain = generate(tiny_lm, prompts, None, new_tokens=25, seed=3)
    poe0 = parse_protection("poe:gamma=0,proxy=p").processor(None, VOCAB, proxy=proxy)
    assert torch.equal(generate(tiny_lm, prompts, poe0, new_tokens=25, seed=3), plain)
    poe = parse_protection("poe:gamma=0.4,proxy=p").processor(None, VOCAB, proxy=proxy)
    scores = torch.randn(3, VOCAB)
    with torch.no_grad():
        z_p = proxy(input_ids=prompts).logits[:, -1]
    torch.testing.assert_close(poe(prompts, scores), 0.6 * scores + 0.4 * z_p, atol=1e-5, rtol=1e-5)
    assert not torch.equal(generate(tiny_lm, prompts, poe, new_tokens=25, seed=3), plain)


def test_ads_lam_zero_reproduces_plain_sampling_bit_for_bit(tiny_lm, proxy):
    prompts = prompts_of(4, 6, seed=1)
    plain = generate(tiny_lm, prompts, None, new_tokens=30, seed=11)
    ads0 = parse_protection("ads:lam=0,eps=0.01,proxy=p").processor(None, VOCAB, proxy=proxy,
                                                                       grad=held_out_gradient(proxy))
    assert torch.equal(generate(tiny_lm, prompts, ads0, new_tokens=30, seed=11), plain)
    ads = parse_protection("ads:lam=5,eps=0.01,proxy=p").processor(None, VOCAB, proxy=proxy,
                                                                      grad=held_out_gradient(proxy))
    assert not torch.equal(generate(tiny_lm, prompts, ads, new_tokens=30, seed=11), plain)


@pytest.mark.parametrize("dtype, eps, tol", [(torch.float64, 1e-3, 1e-4), (torch.float32, 1e-2, 1e-2)])
def test_ads_delta_is_the_directional_derivative(proxy, dtype, eps, tol):
    # (Llama normalises in float32 even in a float64 model, which bounds the float64 tolerance.)
    model = copy.deepcopy(proxy).to(dtype)
    grad = held_out_gradient(model)
    proc = parse_protection(f"ads:lam=1,eps={eps},proxy=p").processor(None, VOCAB, proxy=model, grad=grad)
    ids = prompts_of(2, 7, seed=4)
    delta = proc.delta(ids)
    got, exact = [], []
    for row in range(2):
        for x in torch.randperm(VOCAB, generator=torch.Generator().manual_seed(row))[:5].tolist():
            model.zero_grad()
            torch.log_softmax(model(input_ids=ids[row:row + 1]).logits[0, -1], -1)[x].backward()
            exact.append(sum(float((p.grad * grad[n]).sum()) for n, p in model.named_parameters()))
            got.append(float(delta[row, x]))
    got, exact = torch.tensor(got), torch.tensor(exact)
    assert (got - exact).abs().max() <= tol * exact.abs().max(), (got, exact)


def test_ads_rows_of_a_batch_are_independent(proxy):
    grad = held_out_gradient(proxy)
    spec = parse_protection("ads:lam=1,eps=0.01,proxy=p")
    a, b, c = prompts_of(1, 8, seed=5), prompts_of(1, 8, seed=6), prompts_of(1, 8, seed=7)
    with_b = spec.processor(None, VOCAB, proxy=proxy, grad=grad).delta(torch.cat([a, b]))[0]
    with_c = spec.processor(None, VOCAB, proxy=proxy, grad=grad).delta(torch.cat([a, c]))[0]
    alone = spec.processor(None, VOCAB, proxy=proxy, grad=grad).delta(a)[0]
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), a], dim=1)
    beside_longer = spec.processor(None, VOCAB, proxy=proxy, grad=grad).delta(torch.cat([padded, prompts_of(1, 11)]))[0]
    for other in (with_c, alone, beside_longer):
        torch.testing.assert_close(with_b, other, atol=2e-3, rtol=1e-4)


def test_proxy_protections_refuse_without_their_resources(proxy):
    with pytest.raises(UserError, match="needs its proxy"):
        parse_protection("poe").processor(None, VOCAB)
    with pytest.raises(UserError, match="gradient"):
        parse_protection("ads").processor(None, VOCAB, proxy=proxy)
    with pytest.raises(UserError, match="does not match"):
        parse_protection("ads").processor(None, VOCAB, proxy=proxy, grad={"x": torch.zeros(1)})
    assert parse_protection("ads").extra_forwards == 2 and parse_protection("poe").extra_forwards == 1
