"""Built-in Llama-style presets (`tiny`, `mini`, `small`, `medium`) with the project tokenizer, seeded."""
from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from antidistill.watermark.errors import UserError

from .tokenizer import project_tokenizer

# Llama-style shapes small enough for CPU work; `small` is the demo teacher's shape.
PRESETS: dict[str, dict] = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256),
    "mini": dict(hidden_size=96, num_hidden_layers=3, num_attention_heads=3, intermediate_size=384),
    "small": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512),
    "medium": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=8, intermediate_size=1024),
}
MAX_POSITIONS = 512
TOKENIZER_PARAM = "tokenizer="


def split_preset(name: str) -> tuple[str, str | None] | None:
    """`tiny` -> ("tiny", None); `tiny:tokenizer=WHERE` -> ("tiny", "WHERE") (a from-scratch student
    with another model's tokenizer: `teacher`, `project`, a model folder, `smollm2` or a hub id); None
    when `name` names no preset."""
    preset, sep, rest = str(name).partition(":")
    if preset not in PRESETS:
        return None
    if not sep:
        return preset, None
    if not rest.startswith(TOKENIZER_PARAM) or not rest[len(TOKENIZER_PARAM):].strip():
        raise UserError(f"student {name!r}: a preset takes one parameter, {TOKENIZER_PARAM}WHERE (e.g. "
                        f"{preset}:tokenizer=smollm2)")
    return preset, rest[len(TOKENIZER_PARAM):].strip()


def preset_config(name: str, tokenizer) -> LlamaConfig:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return LlamaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=MAX_POSITIONS,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True, rms_norm_eps=1e-5,
        **PRESETS[name])


def build_model(preset: str, seed: int = 0, cache_dir=None, tokenizer=None):
    """A freshly initialised preset model and its tokenizer; weights depend only on `seed`."""
    tokenizer = tokenizer or project_tokenizer(cache_dir)
    config = preset_config(preset, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    set_generation_defaults(model, tokenizer)
    return model, tokenizer


def set_generation_defaults(model, tokenizer) -> None:
    gc = model.generation_config
    gc.pad_token_id = tokenizer.pad_token_id
    gc.bos_token_id = tokenizer.bos_token_id
    gc.eos_token_id = tokenizer.eos_token_id


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
