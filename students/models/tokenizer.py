"""The project's own tokenizer: byte-level BPE trained with `tokenizers` on the task suite.

Byte-level, so any text round-trips exactly; digits are split one per token (a space may lead
a digit), so arithmetic traces stay learnable by small models. Trained deterministically on first
use and cached; saved as a `PreTrainedTokenizerFast` like any hub tokenizer.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from ..cache import build_once, cache_root, config_hash
from ..tasks.suite import corpus_text

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = [PAD, BOS, EOS, UNK]  # ids 0..3
# GPT-2-style split, except that each digit is its own piece (optionally led by one space).
_SPLIT = r" ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
TOKENIZER_VERSION = 4  # bump when the task suite's text changes


def tokenizer_config(vocab_size: int = 512, n_texts: int = 4000) -> dict:
    return {"kind": "bpe-bytelevel", "version": TOKENIZER_VERSION, "vocab_size": vocab_size,
            "n_texts": n_texts}


def train_tokenizer(texts, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE on `texts`; BOS is prepended to every encoded text."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   unk_token=UNK, padding_side="left", clean_up_tokenization_spaces=False)
    return fast


def project_tokenizer(cache_dir: str | os.PathLike | None = None, vocab_size: int = 512,
                      n_texts: int = 4000) -> PreTrainedTokenizerFast:
    """The project tokenizer, trained on the task suite's train split on first use, then cached."""
    cfg = tokenizer_config(vocab_size, n_texts)
    target = cache_root(cache_dir) / f"tokenizer-{config_hash(cfg)}"

    def build(tmp: Path):
        tok = train_tokenizer(corpus_text(n_texts, seed=0), vocab_size=vocab_size)
        tok.save_pretrained(tmp)
        (tmp / "antidistill_tokenizer.json").write_text(json.dumps(cfg, indent=2))

    return PreTrainedTokenizerFast.from_pretrained(build_once(target, build))


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of the vocabulary and special tokens: equal fingerprints give equal token ids."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    blob = json.dumps({"vocab": vocab, "bos": tokenizer.bos_token, "eos": tokenizer.eos_token,
                       "pad": tokenizer.pad_token}, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def saved_tokenizer(tokenizer, cache_dir=None) -> Path:
    """A folder holding `tokenizer`, named by its fingerprint: what a from-scratch model built with
    another model's tokenizer names (`tiny:tokenizer=FOLDER`), stable across runs."""
    target = cache_root(cache_dir) / "tokenizers" / tokenizer_fingerprint(tokenizer)
    return build_once(target, tokenizer.save_pretrained)
