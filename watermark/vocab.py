"""The vocabulary a protection hashes over: the model's output layer, checked against the tokenizer."""
from __future__ import annotations

from .errors import UserError


def output_vocab_size(model) -> int:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and getattr(head, "weight", None) is not None:
        return int(head.weight.shape[0])
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    if size is None:
        raise UserError("cannot tell the model's vocabulary size: it has no output layer and no config.vocab_size")
    return int(size)


def check_vocab(model, tokenizer=None, *, allow_padding: bool = False) -> int:
    """Vocabulary size from the model's output layer, refused if the tokenizer disagrees.

    A tokenizer with more ids than the output layer would produce tokens the model can never
    score; a larger output layer is only accepted with `allow_padding` (rows the tokenizer never
    emits, as some checkpoints pad to a multiple of 64).
    """
    size = output_vocab_size(model)
    if tokenizer is None:
        return size
    n_tok = len(tokenizer)
    if n_tok == size or (allow_padding and n_tok < size):
        return size
    raise UserError(f"vocabulary mismatch: the model's output layer has {size} rows but the tokenizer has "
                    f"{n_tok} tokens; use the tokenizer saved with this model")
