"""Proxy-based countermeasures end to end: proxies resolved and cached, ADS's gradient, the CLI."""
import json

import pytest
import torch

from antidistill.eval.cli import main
from antidistill.students import proxy as proxy_mod
from antidistill.students.corpus import generate_corpus, read_corpus
from antidistill.students.proxy import ProxyConfig, load_proxy, proxy_gradient, sft_gradient
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
    monkeypatch.setattr("antidistill.students.distill.train_student", lambda *a, **k: calls.append(a))
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
