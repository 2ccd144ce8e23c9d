"""Saved models on disk (a model folder, a `train` output folder, a hub id) and the device to run on."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer

from antidistill.watermark.errors import UserError

from .presets import PRESETS, set_generation_defaults


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """A `train` output folder holds its final model in `model/`; anything else is used as is."""
    p = Path(path)
    if (p / "model" / "config.json").is_file() and not (p / "config.json").is_file():
        return p / "model"
    return p


def from_pretrained(where: str, dtype=torch.float32):
    """(model in eval mode, tokenizer) of a saved model folder or a hub id, padded on the left."""
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
    set_generation_defaults(model, tok)
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
