"""A second model run beside `generate`, one token per step, with its own KV cache.

Protections that consult a proxy student at sampling time (poe, ads) see only `input_ids` in their
`LogitsProcessor.__call__`. Re-running the proxy on the whole prefix every step would cost
O(T^2) per sequence; instead it is fed each new token once. A call whose ids are the previous
call's ids plus one column continues the cache; anything else (a new `generate`, a new batch)
starts afresh. Leading pad tokens (left padding) are masked and positions count real tokens
only, as `generate` does for the teacher, so a row's logits do not depend on its padding.
"""
from __future__ import annotations

import torch
from transformers import DynamicCache

from .errors import UserError


def continues(prev: torch.Tensor | None, input_ids: torch.Tensor) -> bool:
    """True when `input_ids` are `prev` plus one column: the next step of the same `generate` call."""
    return (prev is not None and input_ids.shape[0] == prev.shape[0]
            and input_ids.shape[1] == prev.shape[1] + 1 and torch.equal(input_ids[:, :-1], prev))


class StepwiseModel:
    def __init__(self, model, vocab_size: int, pad_token_id: int | None = None):
        self.model = model.eval()
        self.vocab_size = int(vocab_size)
        if pad_token_id is None:
            pad_token_id = getattr(model.generation_config, "pad_token_id", None)
        self.pad = model.config.pad_token_id if pad_token_id is None else pad_token_id
        self._ids = self._mask = self._pos = self._cache = None

    def _continues(self, input_ids: torch.Tensor) -> bool:
        return continues(self._ids, input_ids)

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits [B, V] after each row of `input_ids`."""
        if self._continues(input_ids):
            new = input_ids[:, -1:]
            self._mask = torch.cat([self._mask, self._mask.new_ones(len(new), 1)], dim=1)
            self._pos = self._pos[:, -1:] + 1
        else:
            new = input_ids
            real = input_ids != self.pad if self.pad is not None else torch.ones_like(input_ids, dtype=torch.bool)
            self._mask = (real.long().cumsum(-1) > 0).long()  # only leading pads are padding
            self._pos = (self._mask.cumsum(-1) - 1).clamp_min(0)
            self._cache = DynamicCache()
        out = self.model(input_ids=new, attention_mask=self._mask, position_ids=self._pos,
                         cache=self._cache, use_cache=True, logits_to_keep=1)
        self._ids = input_ids.clone()
        logits = out.logits[:, -1]
        if logits.shape[-1] != self.vocab_size:
            raise UserError(f"the proxy scores {logits.shape[-1]} tokens but the teacher {self.vocab_size}; "
                            "the proxy must share the teacher's tokenizer and output layer")
        return logits
