"""The one keyed hash every protection builds on.

All values are 32-bit unsigned words. On the CPU they are numpy uint32 arrays, whose
multiplication wraps modulo 2**32 by definition and runs in SIMD lanes; on other devices (CUDA)
they are torch int64 tensors, where every product of a word and a constant below 2**31 stays
below 2**63 and is masked back to 32 bits. Both are exact modular arithmetic, so the bits are the
same on every device and platform (golden vectors in tests/watermark/test_hashing.py and
test_device_parity.py). Torch CPU tensors given to `KeyedHash` are hashed through numpy.

    tok(v)            = mix(v XOR k_hi)                     keyed token code
    state(c_1..c_h)   = mix(...mix(mix(k_lo XOR tok(c_1)) XOR tok(c_2))... XOR tok(c_h))
    prf_input(c, v)   = state(c) XOR tok(v)                 one 32-bit word per (window, token)
    prf(c, v)         = mix(prf_input(c, v))                uniform on [0, 2**32)

`mix` is a bijection on 32 bits (xor-shifts and multiplications by odd constants), so distinct
PRF inputs give distinct outputs. Detectors deduplicate on `prf_input`: one score per distinct
input is exactly one independent draw under H0, whatever the text.
Everything is vectorised: contexts are [..., h] arrays and candidates broadcast against the
state, so a whole vocabulary (generation) or all positions (detection) cost a few array ops.
"""
from __future__ import annotations

import numpy as np
import torch

from .keys import Key

MASK32 = 0xFFFFFFFF
TWO32 = float(2**32)
_M1 = 0x045D9F3B  # odd multipliers below 2**31: int64 products of 32-bit words cannot overflow
_M2 = 0x2C1B3C6D


def mix(x):
    """Bijective 32-bit finaliser (xorshift-multiply) of numpy uint32 or torch int64 words."""
    x = x ^ (x >> 16)
    x = (x * _M1) & MASK32
    x = x ^ (x >> 15)
    x = (x * _M2) & MASK32
    return x ^ (x >> 16)


def mix_(x):
    """In-place `mix` for the hot paths (same bits, one temporary at a time)."""
    wraps = isinstance(x, np.ndarray)  # uint32 products wrap by themselves; int64 ones need the mask
    x ^= x >> 16
    x *= _M1
    if not wraps:
        x &= MASK32
    x ^= x >> 15
    x *= _M2
    if not wraps:
        x &= MASK32
    x ^= x >> 16
    return x


def words(values):
    """Token ids (or words) as the array type the hash runs on: numpy uint32 for anything on the
    CPU, torch int64 for tensors on another device."""
    if isinstance(values, torch.Tensor):
        if values.device.type != "cpu":
            return values.to(torch.int64)
        values = values.numpy()
    return np.asarray(values).astype(np.uint32, copy=False)


def as_tensor(x, device: torch.device | str = "cpu") -> torch.Tensor:
    """A hash result as a torch tensor on `device` (uint32 words widen to int64)."""
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if x.dtype == np.uint32:
        x = x.astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(x)).to(device)


def minimum_(a, b):
    """Elementwise minimum into `a`, for either array type."""
    return np.minimum(a, b, out=a) if isinstance(a, np.ndarray) else torch.minimum(a, b, out=a)


class KeyedHash:
    """The keyed hash for one (key, purpose) pair; `label` separates schemes sharing a key."""

    def __init__(self, key: Key, label: str):
        word = key.word(label)
        self.k_lo = word & MASK32
        self.k_hi = (word >> 32) & MASK32

    def tok(self, tokens):
        """Keyed code of token ids (any shape)."""
        return mix(words(tokens) ^ self.k_hi)

    def state(self, context):
        """Fold the last dimension (h context tokens, oldest first) into one 32-bit state.

        The loop runs over h (a small constant), never over positions.
        """
        codes = self.tok(context)
        if isinstance(codes, np.ndarray):
            s = np.full(codes.shape[:-1], self.k_lo, dtype=np.uint32)
        else:
            s = torch.full(codes.shape[:-1], self.k_lo, dtype=torch.int64, device=codes.device)
        for i in range(codes.shape[-1]):
            s = mix_(s ^ codes[..., i])
        return s

    def prf_input(self, context, tokens):
        """32-bit PRF input of (context window [..., h], token [...]) pairs, position by position."""
        return self.state(context) ^ self.tok(tokens)

    def prf(self, context, tokens):
        return mix_(self.prf_input(context, tokens))


def to_unit(x):
    """32-bit words to float64 uniforms strictly inside (0, 1): (x + 1/2) / 2**32."""
    if isinstance(x, np.ndarray):
        return (x.astype(np.float64) + 0.5) / TWO32
    return (x.to(torch.float64) + 0.5) / TWO32
