"""The DOGe teacher: only lm_head moves, the KL to the proxy grows with beta, cached and reloaded."""
import json

import torch

from antidistill.students.protect import doge as doge_mod
from antidistill.students.protect import proxy as proxy_mod
from antidistill.students.protect.generate import generate_corpus
from antidistill.students.corpus import read_corpus
from antidistill.students.protect.doge import DogeConfig, doge_dir, doge_teacher, kl_half, train_doge
from antidistill.students.protect.proxy import ProxyConfig, load_proxy

SMALL = DogeConfig(steps=30, batch_size=16, lr=3e-3, n_train=256)


def test_kl_half_is_zero_for_equal_logits_and_positive_otherwise():
    z = torch.randn(3, 50)
    assert torch.allclose(kl_half(z, z), torch.zeros(3), atol=1e-6)
    assert (kl_half(z, torch.randn(3, 50)) > 0).all()


def test_only_the_head_moves_and_beta_pushes_away_from_the_proxy(fast_teacher):
    model, tok = fast_teacher
    proxy, _ = load_proxy("tiny", model, tok, "fast", progress=False)
    plain, card0 = train_doge(model, proxy, tok, 0.0, SMALL, progress=False)
    pushed, card1 = train_doge(model, proxy, tok, 1.0, SMALL, progress=False)
    emb = model.get_input_embeddings().weight
    assert torch.equal(pushed.get_input_embeddings().weight, emb)
    assert not torch.equal(pushed.get_output_embeddings().weight, emb)
    for name, p in pushed.named_parameters():
        if "lm_head" not in name and "embed_tokens" not in name:
            assert torch.equal(p, dict(model.named_parameters())[name]), name
    assert card1["log"][-1]["kl"] > card0["log"][-1]["kl"]


def test_doge_corpus_uses_the_cached_defended_teacher(fast_teacher, tmp_path, cache_dir, monkeypatch):
    monkeypatch.setattr(doge_mod, "DEFAULT_DOGE", SMALL)
    monkeypatch.setattr(proxy_mod, "DEFAULT_PROXY", ProxyConfig(n_prompts=32, steps=6, batch_size=8,
                                                                max_new_tokens=48, n_grad=16))
    kw = dict(prompts=8, max_new_tokens=48, progress=False, teacher_name="fast")
    generate_corpus(fast_teacher, tmp_path / "raw", protection="none", **kw)
    generate_corpus(fast_teacher, tmp_path / "doge", protection="doge:beta=1,proxy=tiny", **kw)
    raw, dog = (read_corpus(tmp_path / n).records for n in ("raw", "doge"))
    assert [r["completion_ids"] for r in dog] != [r["completion_ids"] for r in raw]
    model, tok = fast_teacher
    target = doge_dir("fast", tok, 1.0, "preset-tiny-seed0", SMALL, cache_dir)
    card = json.loads((target / "doge_card.json").read_text())
    assert card["beta"] == 1.0
    reloaded = doge_teacher(model, tok, "fast", 1.0, None, "preset-tiny-seed0", cache_dir=cache_dir, progress=False)
    assert not reloaded.config.tie_word_embeddings
    assert torch.equal(reloaded.get_input_embeddings().weight, model.get_input_embeddings().weight)
