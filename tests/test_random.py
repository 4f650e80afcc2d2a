"""tinynet.random: Threefry-2x32 bits against JAX and Random123, samplers across backends."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import TOL, to_numpy

from tinynet import backends
from tinynet import random as tnrandom

SEEDS = [0, 1, 42, 2**31, 2**32 - 1, 2**32 + 5, 2**40 + 7, -1, -5, 2**63 - 1, -(2**63)]
SHAPES = [(), (1,), (7,), (3, 5), (2, 3, 4), (2, 0)]
M32 = 0xFFFFFFFF

# Random123 kat_vectors, threefry2x32_20: (key, counter, expected output)
KAT = [
    ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
    ((M32, M32), (M32, M32), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


@pytest.fixture
def jax():
    """JAX as the oracle, float64 (64-bit seeds, uint64 bits) enabled for the test."""
    jax = pytest.importorskip("jax")
    with jax.enable_x64(True):
        yield jax


def _ref_threefry(key: tuple[int, int], ctr: tuple[int, int]) -> tuple[int, int]:
    """Threefry-2x32-20 in Python ints: an oracle independent of any array library."""
    rot = ((13, 15, 26, 6), (17, 29, 16, 24))
    ks = (key[0], key[1], key[0] ^ key[1] ^ 0x1BD11BDA)
    x0, x1 = (ctr[0] + ks[0]) & M32, (ctr[1] + ks[1]) & M32
    for i in range(5):
        for r in rot[i % 2]:
            x0 = (x0 + x1) & M32
            x1 = (((x1 << r) | (x1 >> (32 - r))) & M32) ^ x0
        x0 = (x0 + ks[(i + 1) % 3]) & M32
        x1 = (x1 + ks[(i + 2) % 3] + i + 1) & M32
    return x0, x1


def _u32(backend, values) -> object:
    return backend.asarray(np.asarray(values, dtype=np.uint32), "uint32")


# ---------------------------------------------------------------- raw block


@pytest.mark.parametrize("key, ctr, expected", KAT)
def test_known_answer_vectors(backend, key, ctr, expected):
    out = tnrandom.threefry_2x32(_u32(backend, key), _u32(backend, ctr))
    assert [int(v) for v in to_numpy(out)] == list(expected)
    assert _ref_threefry(key, ctr) == expected


def test_block_matches_python_reference(backend):
    rng = np.random.default_rng(3)
    key = tuple(int(v) for v in rng.integers(0, 2**32, 2))
    counts = rng.integers(0, 2**32, 10, dtype=np.uint32)
    out = to_numpy(tnrandom.threefry_2x32(_u32(backend, key), _u32(backend, counts)))
    expected = [_ref_threefry(key, (int(counts[i]), int(counts[i + 5]))) for i in range(5)]
    np.testing.assert_array_equal(out[:5], [e[0] for e in expected])
    np.testing.assert_array_equal(out[5:], [e[1] for e in expected])


@pytest.mark.parametrize("shape", [(), (1,), (2,), (5,), (4, 3), (3, 1, 5), (0,)])
def test_threefry_matches_jax(backend, jax, shape):
    from jax.extend.random import threefry_2x32

    rng = np.random.default_rng(len(shape) * 10 + sum(shape))
    key = rng.integers(0, 2**32, 2, dtype=np.uint32)
    count = rng.integers(0, 2**32, shape, dtype=np.uint32)
    out = tnrandom.threefry_2x32(_u32(backend, key), _u32(backend, count))
    expected = np.asarray(threefry_2x32(jax.numpy.asarray(key), jax.numpy.asarray(count)))
    assert tuple(out.shape) == shape and out.dtype == backend.dtype("uint32")
    np.testing.assert_array_equal(to_numpy(out), expected)


def test_threefry_keypair_and_errors(backend):
    count = _u32(backend, [1, 2, 3])
    pair = (backend.asarray(7, "uint32"), backend.asarray(9, "uint32"))
    np.testing.assert_array_equal(
        to_numpy(tnrandom.threefry_2x32(pair, count)),
        to_numpy(tnrandom.threefry_2x32(_u32(backend, [7, 9]), count)),
    )
    np.testing.assert_array_equal(
        to_numpy(tnrandom.threefry_2x32((7, 9), count)),
        to_numpy(tnrandom.threefry_2x32(_u32(backend, [7, 9]), count)),
    )
    with pytest.raises(TypeError):
        tnrandom.threefry_2x32(_u32(backend, [7, 9]), backend.asarray([1, 2], "int32"))
    with pytest.raises(TypeError):
        tnrandom.threefry_2x32(backend.asarray([7, 9], "int32"), count)
    with pytest.raises(TypeError):
        tnrandom.split(_u32(backend, [1, 2, 3]))
    with pytest.raises(TypeError):
        tnrandom.split(backend.asarray([1, 2], "int64"))


# ---------------------------------------------------------------- keys, split, fold_in, bits


def test_jax_default_is_partitionable(jax):
    """What we match: JAX's default; the other setting gives other bits."""
    assert jax.config.jax_threefry_partitionable
    k = jax.random.PRNGKey(0)
    with jax.threefry_partitionable(False):
        legacy = np.asarray(jax.random.split(k, 3))
    ours = to_numpy(tnrandom.split(tnrandom.key(0, "numpy"), 3))
    assert not np.array_equal(ours, legacy)


@pytest.mark.parametrize("seed", SEEDS)
def test_key_matches_jax(backend, jax, seed):
    k = tnrandom.key(seed, backend)
    assert tuple(k.shape) == (2,) and k.dtype == backend.dtype("uint32")
    np.testing.assert_array_equal(to_numpy(k), np.asarray(jax.random.PRNGKey(seed)))
    np.testing.assert_array_equal(
        to_numpy(k), np.asarray(jax.random.key_data(jax.random.key(seed)))
    )


def test_key_range_and_backend_choice(backend):
    for bad in (2**63, -(2**63) - 1, 2**64):
        with pytest.raises(ValueError, match="64-bit"):
            tnrandom.key(bad)
    with pytest.raises(TypeError):
        tnrandom.key(1.5)
    assert backends.backend_of(tnrandom.key(3)) is backend  # the current backend
    assert backends.backend_of(tnrandom.key(3, "numpy")).name == "numpy"
    np.testing.assert_array_equal(to_numpy(tnrandom.key(-1)), [M32, M32])
    np.testing.assert_array_equal(to_numpy(tnrandom.key(2**32 + 5)), [1, 5])


@pytest.mark.parametrize("seed", [0, 7, 2**40 + 7, -3])
@pytest.mark.parametrize("num", [1, 2, 3, 7, (2, 3)])
def test_split_matches_jax(backend, jax, seed, num):
    out = tnrandom.split(tnrandom.key(seed, backend), num)
    expected = np.asarray(jax.random.split(jax.random.PRNGKey(seed), num))
    assert out.dtype == backend.dtype("uint32")
    np.testing.assert_array_equal(to_numpy(out), expected)


@pytest.mark.parametrize("data", [0, 1, 7, 2**31, 2**32 - 1])
def test_fold_in_matches_jax(backend, jax, data):
    for seed in (0, 42, -9):
        ours = tnrandom.fold_in(tnrandom.key(seed, backend), data)
        expected = np.asarray(jax.random.fold_in(jax.random.PRNGKey(seed), data))
        np.testing.assert_array_equal(to_numpy(ours), expected)
        as_array = tnrandom.fold_in(tnrandom.key(seed, backend), backend.asarray(data, "uint32"))
        np.testing.assert_array_equal(to_numpy(as_array), expected)
        as_numpy_int = tnrandom.fold_in(tnrandom.key(seed, backend), np.uint32(data))
        np.testing.assert_array_equal(to_numpy(as_numpy_int), expected)


def test_host_fold_in_matches_the_array_threefry():
    """Host keys fold in with a Python-int Threefry; it must equal the array
    one (the JAX-verified code path) on arbitrary keys and counters."""
    from tinynet.random import _block, _block_int

    words = np.random.default_rng(7).integers(0, 2**32, size=(2000, 4), dtype=np.uint64)
    words[:4] = [[0, 0, 0, 0], [2**32 - 1] * 4, [0, 2**32 - 1, 0, 2**32 - 1], [1, 2, 3, 4]]
    w = words.astype(np.uint32)
    y0, y1 = _block(w[:, 0], w[:, 1], w[:, 2], w[:, 3])
    got = np.array([_block_int(*map(int, row)) for row in w], dtype=np.uint32)
    np.testing.assert_array_equal(got, np.stack([y0, y1], axis=1))


def test_fold_in_rejects(backend):
    k = tnrandom.key(0, backend)
    for bad in (-1, 2**32):
        with pytest.raises(ValueError):
            tnrandom.fold_in(k, bad)
    with pytest.raises(TypeError):
        tnrandom.fold_in(k, backend.asarray([1, 2], "uint32"))
    other = "strict" if backend.name != "strict" else "numpy"
    with pytest.raises(TypeError, match="mixed"):
        tnrandom.fold_in(k, backends.load(other).asarray(1, "uint32"))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "uint64"])
def test_bits_matches_jax(backend, jax, shape, dtype):
    for seed in (0, 1234567, -2):
        ours = tnrandom.bits(tnrandom.key(seed, backend), shape, dtype)
        expected = np.asarray(jax.random.bits(jax.random.PRNGKey(seed), shape, dtype))
        assert tuple(ours.shape) == shape and ours.dtype == backend.dtype(dtype)
        np.testing.assert_array_equal(to_numpy(ours), expected)


def test_chained_derivations_match_jax(backend, jax):
    jr = jax.random
    keys = tnrandom.split(tnrandom.key(5, backend), 4)
    ours = tnrandom.bits(tnrandom.fold_in(keys[2, :], 99), 33)
    expected = jr.bits(jr.fold_in(jr.split(jr.PRNGKey(5), 4)[2], 99), (33,), "uint32")
    np.testing.assert_array_equal(to_numpy(ours), np.asarray(expected))


# ---------------------------------------------------------------- uniform


BOUNDS = [(0.0, 1.0), (-3.0, 5.7), (-0.1234, 0.1234), (2.0, 1e6)]


@pytest.mark.parametrize("low, high", BOUNDS)
@pytest.mark.parametrize("shape", [(), (7, 3), (1001,)])
def test_uniform_bit_identical_across_backends(backend, dtype, low, high, shape):
    ref = tnrandom.uniform(tnrandom.key(11, "numpy"), shape, dtype, low, high)
    out = tnrandom.uniform(tnrandom.key(11, backend), shape, dtype, low, high)
    assert tuple(out.shape) == shape and out.dtype == backend.dtype(dtype)
    view = np.uint32 if dtype == "float32" else np.uint64
    np.testing.assert_array_equal(to_numpy(out).view(view), ref.view(view))


@pytest.mark.parametrize("low, high", BOUNDS[:3])
def test_uniform_matches_jax(backend, jax, dtype, low, high):
    """Bonus property: same floats as jax.random.uniform (exact for these bounds)."""
    out = tnrandom.uniform(tnrandom.key(3, backend), (999,), dtype, low, high)
    expected = jax.random.uniform(jax.random.PRNGKey(3), (999,), dtype, low, high)
    np.testing.assert_array_equal(to_numpy(out), np.asarray(expected))


def test_uniform_range_and_resolution(backend, dtype):
    x = to_numpy(tnrandom.uniform(tnrandom.key(1, backend), (100_000,), dtype, -2.0, 3.0))
    assert x.min() >= -2.0 and x.max() < 3.0
    assert x.min() < -1.99 and x.max() > 2.99
    u = to_numpy(tnrandom.uniform(tnrandom.key(1, backend), (100_000,), dtype))
    scaled = u.astype(np.float64) * 2.0**23
    if dtype == "float32":  # 23 random bits: multiples of 2**-23
        np.testing.assert_array_equal(scaled, np.floor(scaled))
    else:  # 52 random bits: almost never a multiple of 2**-23
        assert np.mean(scaled != np.floor(scaled)) > 0.99
    # a one-ulp-wide interval: everything must be low, never high
    tight = tnrandom.uniform(tnrandom.key(2, backend), (1000,), "float32", 1.0, 1.0000001)
    np.testing.assert_array_equal(to_numpy(tight), np.ones(1000, np.float32))


def test_uniform_statistics(backend, dtype):
    x = to_numpy(tnrandom.uniform(tnrandom.key(2024, backend), (100_000,), dtype))
    assert abs(x.mean() - 0.5) < 0.005
    assert abs(x.var() - 1 / 12) < 0.002
    hist = np.histogram(x, bins=10, range=(0.0, 1.0))[0]
    assert hist.min() > 9_500 and hist.max() < 10_500


def test_uniform_rejects(backend):
    k = tnrandom.key(0, backend)
    with pytest.raises(ValueError):
        tnrandom.uniform(k, (3,), "float32", 1.0, 1.0)
    with pytest.raises(ValueError):
        tnrandom.uniform(k, (3,), "int32")
    with pytest.raises(TypeError):
        tnrandom.uniform(k, (3,), "float32", backend.asarray([0.0], "float32"), 1.0)
    with pytest.raises(ValueError):
        tnrandom.uniform(k, (-1,))
    # beyond float32's range: a ValueError naming the overflow, not struct's OverflowError
    with pytest.raises(ValueError, match="high - low overflows float32"):
        tnrandom.uniform(k, (3,), "float32", -3e38, 3e38)
    with pytest.raises(ValueError, match="high - low overflows float32"):
        tnrandom.uniform(k, (3,), "float32", 0.0, 1e39)
    assert to_numpy(tnrandom.uniform(k, (3,), "float64", -3e38, 3e38)).dtype == np.float64
    as_object = tnrandom.uniform(k, (4,), backend.dtype("float64"))
    assert as_object.dtype == backend.dtype("float64")


# ---------------------------------------------------------------- bernoulli, permutation, normal


def test_bernoulli(backend):
    k = tnrandom.key(8, backend)
    x = tnrandom.bernoulli(k, 0.3, (100_000,))
    assert x.dtype == backend.dtype("bool")
    assert abs(to_numpy(x).mean() - 0.3) < 0.006
    ref = tnrandom.bernoulli(tnrandom.key(8, "numpy"), 0.3, (100_000,))
    np.testing.assert_array_equal(to_numpy(x), ref)
    assert not to_numpy(tnrandom.bernoulli(k, 0.0, (1000,))).any()
    assert to_numpy(tnrandom.bernoulli(k, 1.0, (1000,))).all()
    p = backend.asarray([0.0, 1.0, 0.0, 1.0], "float32")
    np.testing.assert_array_equal(to_numpy(tnrandom.bernoulli(k, p)), [False, True, False, True])
    assert tuple(tnrandom.bernoulli(k, 0.5).shape) == ()


@pytest.mark.parametrize("n", [0, 1, 2, 17, 1000])
def test_permutation(backend, n):
    perm = tnrandom.permutation(tnrandom.key(4, backend), n)
    assert perm.dtype == backend.dtype("int64") and tuple(perm.shape) == (n,)
    p = to_numpy(perm)
    np.testing.assert_array_equal(np.sort(p), np.arange(n))
    np.testing.assert_array_equal(p, tnrandom.permutation(tnrandom.key(4, "numpy"), n))
    if n >= 17:
        assert not np.array_equal(p, np.arange(n))
        other = to_numpy(tnrandom.permutation(tnrandom.key(5, backend), n))
        assert not np.array_equal(p, other)


@pytest.mark.parametrize("n", [2, 17, 1000, 30_000])
def test_permutation_is_the_argsort_of_the_draws(n):
    """Independent reference: a stable NumPy argsort of the 64-bit draws
    (``bits`` = jax.random.bits) with their low ``bit_length(n - 1)`` bits
    dropped; the ``>> b`` makes ties ~2**b times likelier, still never here."""
    k = tnrandom.key(9, "numpy")
    draws = np.asarray(tnrandom.bits(k, (n,), "uint64"))
    b = (n - 1).bit_length()
    ref = np.argsort(draws >> np.uint64(b), kind="stable")
    np.testing.assert_array_equal(tnrandom.permutation(k, n), ref)
    np.testing.assert_array_equal(np.argsort(draws, kind="stable"), ref)


def test_permutation_is_uniform():
    keys = tnrandom.split(tnrandom.key(0, "numpy"), 1200)
    counts: dict[tuple[int, ...], int] = {}
    for i in range(1200):
        p = tuple(int(v) for v in tnrandom.permutation(keys[i, :], 3))
        counts[p] = counts.get(p, 0) + 1
    assert len(counts) == 6
    assert all(140 < c < 260 for c in counts.values()), counts


def test_normal(backend, dtype):
    x = tnrandom.normal(tnrandom.key(77, backend), (100_000,), dtype)
    assert x.dtype == backend.dtype(dtype) and tuple(x.shape) == (100_000,)
    z = to_numpy(x).astype(np.float64)
    assert abs(z.mean()) < 0.015
    assert abs(z.var() - 1.0) < 0.02
    assert abs(np.mean(np.abs(z) > 2.0) - 0.0455) < 0.003  # the tails are Gaussian
    ref = tnrandom.normal(tnrandom.key(77, "numpy"), (100_000,), dtype)
    np.testing.assert_allclose(z, ref, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"])
    assert tuple(tnrandom.normal(tnrandom.key(1, backend)).shape) == ()


# ---------------------------------------------------------------- jit


def test_jit_matches_eager(backend):
    def draw(k, d):
        sub = tnrandom.split(k, 3)
        return (
            sub,
            tnrandom.fold_in(sub[1, :], d),
            tnrandom.bits(k, (5, 3)),
            tnrandom.uniform(k, (9,), "float64", -1.5, 2.5),
            tnrandom.uniform(k, (99,), "float32", -0.3, 0.7),
            tnrandom.bernoulli(k, 0.4, (6,)),
            tnrandom.permutation(k, 11),
            tnrandom.normal(k, (4,)),
        )

    k = tnrandom.key(31, backend)
    d = backend.asarray(12, "uint32")
    eager = draw(k, d)
    compiled = backend.jit(draw)(k, d)
    for a, b in zip(eager, compiled, strict=True):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    by_int = tnrandom.fold_in(eager[0][1, :], 12)
    np.testing.assert_array_equal(to_numpy(eager[1]), to_numpy(by_int))
