import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

VOCAB = 1000


@pytest.fixture(scope="session")
def tiny_lm():
    """A small randomly initialised Llama whose next-token distributions have real entropy
    (the head is scaled up so they are neither flat nor one-hot)."""
    torch.manual_seed(1234)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    return model


def generate(model, prompts, processor=None, new_tokens=100, seed=0):
    """Sample exactly `new_tokens` tokens per prompt (no EOS stop), optionally through a processor."""
    torch.manual_seed(seed)
    lp = LogitsProcessorList([processor]) if processor is not None else None
    out = model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True, top_k=0,
                         max_new_tokens=new_tokens, min_new_tokens=new_tokens, logits_processor=lp,
                         eos_token_id=None, pad_token_id=0)
    return out[:, prompts.shape[1]:]
