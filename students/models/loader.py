"""`load_model(name)`: every way the bench names a model: `demo` (the project-trained demo teacher,
trained on first use and cached; `teacher.py`), and every other name as `pretrained.py` resolves it.
It sits above the presets, the folders, the pretrained loaders and the demo teacher, which never import it.
"""
from __future__ import annotations

import torch

from .pretrained import check_pretrained, load_pretrained, load_tokenizer
from .teacher import demo_teacher

__all__ = ["check_model", "load_model", "load_tokenizer"]


def load_model(name_or_path: str, *, seed: int = 0, cache_dir=None, dtype=torch.float32):
    """(model, tokenizer) for `demo`, a preset, `smollm2`, a .gguf file, a local folder or a hub id;
    model in eval mode."""
    if str(name_or_path) == "demo":
        return demo_teacher(cache_dir=cache_dir)
    return load_pretrained(name_or_path, seed=seed, cache_dir=cache_dir, dtype=dtype)


def check_model(name_or_path: str, what: str = "model") -> None:
    """Refuse, in one line and without loading anything, a name that `load_model` cannot resolve on
    this machine offline (`pretrained.check_pretrained`); `demo` always resolves."""
    if str(name_or_path) != "demo":
        check_pretrained(name_or_path, what)
