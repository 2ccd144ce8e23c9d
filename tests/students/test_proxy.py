"""Proxy-based countermeasures end to end: proxies resolved and cached, ADS's gradient, the CLI."""
import json

import pytest
import torch

from antidistill.eval.cli import main
from antidistill.students.protect import proxy as proxy_mod
from antidistill.students.protect.generate import generate_corpus
from antidistill.students.corpus import read_corpus
from antidistill.students.protect.proxy import ProxyConfig, load_proxy, proxy_gradient, records_gradient, sft_gradient
from antidistill.watermark import UserError

SMALL = ProxyConfig(n_prompts=32, steps=6, batch_size=8, max_new_tokens=48, n_grad=16)


@pytest.fixture(autouse=True)
def small_proxy(monkeypatch):
    monkeypatch.setattr(proxy_mod, "DEFAULT_PROXY", SMALL)


def test_distilled_proxy_is_built_once_and_gradient_cached(fast_teacher, cache_dir, monkeypatch):
    model, tok = fast_teacher
    proxy, pid = load_proxy("distilled", model, tok, "fast", cache_dir=cache_dir, progress=False)
    assert (cache_dir / "proxies" / pid / "student" / "model" / "config.json").is_file()
    calls = []
    monkeypatch.setattr("antidistill.students.protect.proxy.train_student", lambda *a, **k: calls.append(a))
    again, pid2 = load_proxy("distilled", model, tok, "fast", cache_dir=cache_dir, progress=False)
    assert pid2 == pid and not calls  # cached: no second training
    grad = proxy_gradient(proxy, pid, model, tok, "fast", cache_dir=cache_dir, progress=False)
    assert set(grad) == {n for n, _ in proxy.named_parameters()}
    assert all(torch.isfinite(g).all() for g in grad.values()) and any(g.abs().sum() > 0 for g in grad.values())
    monkeypatch.setattr(proxy_mod, "sft_gradient", lambda *a, **k: 1 / 0)  # a rebuild would fail
    cached = proxy_gradient(proxy, pid, model, tok, "fast", cache_dir=cache_dir, progress=False)
    assert all(torch.equal(cached[n], grad[n]) for n in grad)


def test_sft_gradient_is_the_mean_token_loss_gradient(fast_teacher, tmp_path):
    model, tok = fast_teacher
    generate_corpus(fast_teacher, tmp_path / "c", prompts=6, max_new_tokens=24, progress=False, teacher_name="f")
    proxy, _ = load_proxy("tiny", model, tok, "f", progress=False)
    grad = sft_gradient(proxy, tmp_path / "c", tok, batch_size=4)  # two batches of unequal token counts
    whole = sft_gradient(proxy, tmp_path / "c", tok, batch_size=6)
    assert all(torch.allclose(grad[n], whole[n], atol=1e-6) for n in grad)


def _direct_gradient(model, records, eos: int, mode: str) -> dict:
    """The held-out loss by plain autograd, one trace at a time (no padding, no batching)."""
    model.zero_grad(set_to_none=True)
    per_trace, n_tokens = [], []
    for r in records:
        target = r["completion_ids"] + ([eos] if r["stop"] == "eos" else [])
        ids = torch.tensor([r["prompt_ids"] + target])
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        nll = -logp[len(r["prompt_ids"]) - 1:].gather(-1, torch.tensor(target)[:, None])[:, 0]
        per_trace.append(nll.sum())
        n_tokens.append(len(target))
    if mode == "token":
        loss = torch.stack(per_trace).sum() / sum(n_tokens)
    else:
        loss = torch.stack([s / n for s, n in zip(per_trace, n_tokens)]).mean()
    loss.backward()
    grad = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return grad


def _flat(grad: dict) -> torch.Tensor:
    return torch.cat([g.flatten() for _, g in sorted(grad.items())]).double()


@pytest.mark.parametrize("lengths", [(6, 6, 6, 6), (2, 3, 14, 30)])
def test_sequence_and_token_gradients_match_autograd(fast_teacher, lengths):
    """grad=token and grad=sequence are what they say (a direct autograd computation, batched
    unevenly); they coincide when every trace has the same length and differ otherwise."""
    model, tok = fast_teacher
    proxy, _ = load_proxy("tiny", model, tok, "f", progress=False)
    proxy = proxy.float()
    gen = torch.Generator().manual_seed(len(set(lengths)))
    records = [{"prompt_ids": torch.randint(3, 200, (4 + i,), generator=gen).tolist(),
                "completion_ids": torch.randint(3, 200, (n - (i % 2),), generator=gen).tolist(),
                "stop": "eos" if i % 2 else "length"} for i, n in enumerate(lengths)]  # n tokens with EOS
    got = {m: _flat(records_gradient(proxy, records, tok, batch_size=3, mode=m)) for m in ("token", "sequence")}
    want = {m: _flat(_direct_gradient(proxy, records, tok.eos_token_id, m)) for m in ("token", "sequence")}
    for m in got:
        assert torch.allclose(got[m], want[m], rtol=1e-4, atol=1e-7), m
    cosine = torch.nn.functional.cosine_similarity(got["token"], got["sequence"], dim=0)
    if len(set(lengths)) == 1:
        assert torch.allclose(got["token"], got["sequence"], rtol=1e-4, atol=1e-7)
    else:  # the sequence mean weighs the 2-token trace's tokens 15x more than the 30-token trace's
        assert not torch.allclose(got["token"], got["sequence"], rtol=1e-2, atol=1e-5)
        assert cosine < 0.999


def test_gradient_mode_is_checked_and_keys_its_cache(fast_teacher, cache_dir):
    model, tok = fast_teacher
    proxy, pid = load_proxy("tiny", model, tok, "fast", progress=False)
    with pytest.raises(UserError, match="ads gradient mode must be one of token, sequence"):
        proxy_gradient(proxy, pid, model, tok, "fast", progress=False, mode="batch")
    token = proxy_gradient(proxy, pid, model, tok, "fast", progress=False)
    sequence = proxy_gradient(proxy, pid, model, tok, "fast", progress=False, mode="sequence")
    assert any(not torch.equal(token[n], sequence[n]) for n in token)  # two cache entries, not one
    grads = sorted(p.name for p in (cache_dir / "proxies").glob("grad-*"))
    assert len(grads) >= 2


def test_ads_lam_zero_corpus_equals_the_raw_corpus(fast_teacher, tmp_path):
    kw = dict(prompts=8, max_new_tokens=48, progress=False, teacher_name="fast", batch_size=4)
    generate_corpus(fast_teacher, tmp_path / "raw", protection="none", **kw)
    generate_corpus(fast_teacher, tmp_path / "ads0", protection="ads:lam=0,eps=0.01,proxy=tiny", **kw)
    generate_corpus(fast_teacher, tmp_path / "poe", protection="poe:gamma=0.5,proxy=tiny", **kw)
    raw, ads0, poe = (read_corpus(tmp_path / n).records for n in ("raw", "ads0", "poe"))
    assert [r["completion_ids"] for r in ads0] == [r["completion_ids"] for r in raw]
    assert [r["completion_ids"] for r in poe] != [r["completion_ids"] for r in raw]


def test_cli_generates_under_ads(tmp_path, capsys):
    code = main(["generate", "--teacher", "tiny", "--protection", "ads:lam=0.05,eps=0.01,proxy=tiny", "--prompts", "4",
                 "--max-new-tokens", "8", "--out", str(tmp_path / "c"), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["protection"] == "ads:lam=0.05,eps=0.01,proxy=tiny"


def test_bad_proxies_are_refused(fast_teacher, tmp_path):
    model, tok = fast_teacher
    with pytest.raises(UserError, match="neither 'distilled', a preset"):
        load_proxy(str(tmp_path / "nowhere"), model, tok, "f", progress=False)
    with pytest.raises(UserError, match="needs its proxy"):
        from antidistill.watermark import parse_protection

        parse_protection("poe").processor(None, 512)
