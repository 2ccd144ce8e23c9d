"""The one keyed hash every protection builds on.

All values are 32-bit unsigned integers held in int64 tensors. Every multiplication is of a
value below 2**32 by a constant below 2**31, so no product overflows int64: the arithmetic is
exact and gives the same bits on CPU and CUDA (golden vectors in tests/watermark/test_hashing.py).

    tok(v)            = mix(v XOR k_hi)                     keyed token code
    state(c_1..c_h)   = mix(...mix(mix(k_lo XOR tok(c_1)) XOR tok(c_2))... XOR tok(c_h))
    prf_input(c, v)   = state(c) XOR tok(v)                 one 32-bit value per (window, token)
    prf(c, v)         = mix(prf_input(c, v))                uniform on [0, 2**32)

`mix` is a bijection on 32 bits (xor-shifts and multiplications by odd constants), so distinct
PRF inputs give distinct outputs. Detectors deduplicate on `prf_input`: one score per distinct
input is exactly one independent draw under H0, whatever the text.
All functions are vectorised: contexts are [..., h] tensors and candidates broadcast against the
state, so a whole vocabulary (generation) or all positions (detection) cost a few tensor ops.
"""
from __future__ import annotations

import torch

from .keys import Key

MASK32 = 0xFFFFFFFF
TWO32 = float(2**32)
_M1 = 0x045D9F3B  # odd multipliers below 2**31: products of 32-bit values stay below 2**63
_M2 = 0x2C1B3C6D


def mix(x: torch.Tensor) -> torch.Tensor:
    """Bijective 32-bit finaliser (xorshift-multiply); input and output in [0, 2**32), int64."""
    x = x ^ (x >> 16)
    x = (x * _M1) & MASK32
    x = x ^ (x >> 15)
    x = (x * _M2) & MASK32
    return x ^ (x >> 16)


def mix_(x: torch.Tensor) -> torch.Tensor:
    """In-place `mix` for the generation hot path (same bits, no temporaries beyond one)."""
    x.bitwise_xor_(x >> 16).mul_(_M1).bitwise_and_(MASK32)
    x.bitwise_xor_(x >> 15).mul_(_M2).bitwise_and_(MASK32)
    return x.bitwise_xor_(x >> 16)


class KeyedHash:
    """The keyed hash for one (key, purpose) pair; `label` separates schemes sharing a key."""

    def __init__(self, key: Key, label: str):
        word = key.word(label)
        self.k_lo = word & MASK32
        self.k_hi = (word >> 32) & MASK32

    def tok(self, tokens: torch.Tensor) -> torch.Tensor:
        """Keyed code of token ids (any shape)."""
        return mix(tokens.to(torch.int64) ^ self.k_hi)

    def state(self, context: torch.Tensor) -> torch.Tensor:
        """Fold the last dimension (h context tokens, oldest first) into one 32-bit state.

        The loop runs over h (a small constant), never over positions.
        """
        context = context.to(torch.int64)
        s = torch.full(context.shape[:-1], self.k_lo, dtype=torch.int64, device=context.device)
        codes = self.tok(context)
        for i in range(context.shape[-1]):
            s = mix(s ^ codes[..., i])
        return s

    def prf_input(self, context: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """32-bit PRF input of (context window [..., h], token [...]) pairs, position by position."""
        return self.state(context) ^ self.tok(tokens)

    def prf(self, context: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return mix(self.prf_input(context, tokens))


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """32-bit integers to float64 uniforms strictly inside (0, 1): (x + 1/2) / 2**32."""
    return (x.to(torch.float64) + 0.5) / TWO32
