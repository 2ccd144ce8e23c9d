"""The one keyed hash: golden vectors, an independent pure-Python reference, bijectivity, context use."""
import numpy as np
import torch

from antidistill.watermark import Key
from antidistill.watermark.hashing import KeyedHash, mix, mix_, to_unit

M32 = 0xFFFFFFFF


def ref_mix(x: int) -> int:
    """Pure-Python reference of `mix` (arbitrary-precision ints, masked to 32 bits)."""
    x ^= x >> 16
    x = (x * 0x045D9F3B) & M32
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & M32
    return x ^ (x >> 16)


def ref_prf(key: Key, label: str, context: list[int], token: int) -> int:
    word = key.word(label)
    lo, hi = word & M32, word >> 32
    s = lo
    for c in context:
        s = ref_mix(s ^ ref_mix(c ^ hi))
    return ref_mix(s ^ ref_mix(token ^ hi))


GOLDEN_KEY = Key(b"antidistill golden key")
GOLDEN_CASES = [  # (context, token) -> prf, fixed forever: a change here breaks every stored watermark
    ([], 0), ([], 49151), ([7], 3), ([1, 2, 3], 5), ([40000, 7, 0], 49151), ([2**32 - 1], 2**31),
]
GOLDEN_PRF = [1837448791, 1312216127, 317637807, 4017277383, 3998060879, 3113490305]


def test_golden_vectors_are_fixed():
    expected = [ref_prf(GOLDEN_KEY, "kgw/left", c, t) for c, t in GOLDEN_CASES]
    assert GOLDEN_KEY.word("kgw/left") == 0x54651FB7364537EC
    assert expected == GOLDEN_PRF
    h = KeyedHash(GOLDEN_KEY, "kgw/left")
    for (context, token), want in zip(GOLDEN_CASES, GOLDEN_PRF):
        got = h.prf(torch.tensor([context], dtype=torch.int64).reshape(1, len(context)), torch.tensor([token]))
        assert int(got[0]) == want


def test_torch_matches_reference_on_random_windows():
    rng = np.random.default_rng(0)
    h = KeyedHash(GOLDEN_KEY, "x")
    ctx = rng.integers(0, 2**32, size=(500, 3))
    tok = rng.integers(0, 2**32, size=500)
    want = [ref_prf(GOLDEN_KEY, "x", list(map(int, c)), int(t)) for c, t in zip(ctx, tok)]
    assert h.prf(ctx, tok).tolist() == want  # numpy uint32 path
    assert h.prf(torch.from_numpy(ctx), torch.from_numpy(tok)).tolist() == want  # CPU tensors
    # the int64 path other devices use, run here on the CPU
    codes = mix(torch.from_numpy(ctx) ^ h.k_hi)
    s = torch.full((500,), h.k_lo, dtype=torch.int64)
    for i in range(3):
        s = mix(s ^ codes[:, i])
    assert mix(s ^ mix(torch.from_numpy(tok) ^ h.k_hi)).tolist() == want


def test_inplace_mix_equals_mix_on_both_array_types_and_is_bijective():
    x = torch.arange(0, 2**20, dtype=torch.int64) * 4093 % 2**32
    want = mix(x)
    assert torch.equal(mix_(x.clone()), want)
    xn = x.numpy().astype(np.uint32)
    assert np.array_equal(mix(xn), want.numpy()) and np.array_equal(mix_(xn.copy()), want.numpy())
    assert len(torch.unique(want)) == len(x)  # distinct inputs, distinct outputs


def test_every_context_token_matters_and_order_matters():
    h = KeyedHash(GOLDEN_KEY, "kgw/left")
    base = torch.tensor([[10, 20, 30, 40]])
    tokens = torch.arange(1000)
    ref = h.prf(base.expand(1000, 4), tokens)
    for i in range(4):
        changed = base.clone()
        changed[0, i] += 1
        assert (h.prf(changed.expand(1000, 4), tokens) != ref).mean() > 0.99
    assert (h.prf(base.flip(-1).expand(1000, 4), tokens) != ref).mean() > 0.99


def test_keys_and_labels_separate_streams():
    t = torch.arange(5000)
    ctx = torch.zeros(5000, 1, dtype=torch.int64)
    a = KeyedHash(Key(b"a"), "kgw/left").prf(ctx, t)
    b = KeyedHash(Key(b"b"), "kgw/left").prf(ctx, t)
    c = KeyedHash(Key(b"a"), "gumbel").prf(ctx, t)
    assert (a == b).sum() == 0 and (a == c).sum() == 0


def test_unit_values_strictly_inside_interval():
    for x in (torch.tensor([0, 2**32 - 1]), np.array([0, 2**32 - 1], dtype=np.uint32)):
        u = to_unit(x)
        assert 0.0 < u[0] < 1e-9 and 1 - 1e-9 < u[1] < 1.0


def test_key_repr_hides_secret():
    k = Key(b"super secret")
    assert "super" not in repr(k) and k.fingerprint in repr(k)
    assert len(k.fingerprint) == 16
