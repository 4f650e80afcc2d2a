"""tinynet.initializers: Keras formulas, truncation, cross-backend identity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import TOL, to_numpy

from tinynet import backends, initializers
from tinynet import random as tnrandom

SHAPE = (300, 200)
TRUNC_STD = 0.87962566103423978


def _limit(name: str, fan_in: int, fan_out: int) -> float:
    return math.sqrt(6.0 / (fan_in + fan_out) if name == "glorot_uniform" else 6.0 / fan_in)


def _target_std(name: str, fan_in: int, fan_out: int) -> float:
    """The standard deviation Keras aims for (after truncation)."""
    return math.sqrt(2.0 / (fan_in + fan_out) if name == "glorot_normal" else 2.0 / fan_in)


@pytest.mark.parametrize("name", ["glorot_uniform", "he_uniform"])
def test_uniform_bounds_and_variance(backend, dtype, name):
    w = initializers.get(name)(tnrandom.key(0, backend), SHAPE, dtype)
    assert tuple(w.shape) == SHAPE and w.dtype == backend.dtype(dtype)
    x = to_numpy(w).astype(np.float64)
    limit = _limit(name, *SHAPE)
    assert x.min() >= -limit and x.max() < limit
    assert x.min() < -0.999 * limit and x.max() > 0.999 * limit
    assert abs(x.mean()) < 4 * limit / math.sqrt(3 * x.size)
    assert abs(x.var() / (limit**2 / 3) - 1.0) < 0.03


@pytest.mark.parametrize("name", ["glorot_uniform", "he_uniform"])
def test_uniform_bit_identical_across_backends(backend, dtype, name):
    fn = initializers.get(name)
    ref = fn(tnrandom.key(9, "numpy"), (17, 33), dtype)
    out = fn(tnrandom.key(9, backend), (17, 33), dtype)
    view = np.uint32 if dtype == "float32" else np.uint64
    np.testing.assert_array_equal(to_numpy(out).view(view), ref.view(view))
    jitted = backend.jit(lambda k: fn(k, (17, 33), dtype))(tnrandom.key(9, backend))
    np.testing.assert_array_equal(to_numpy(jitted).view(view), ref.view(view))


def test_he_uses_fan_in_of_in_out_layout(backend):
    """W is (in, out): he_uniform's limit depends on the first dimension only."""
    wide = to_numpy(initializers.he_uniform(tnrandom.key(1, backend), (10, 1000)))
    tall = to_numpy(initializers.he_uniform(tnrandom.key(1, backend), (1000, 10)))
    assert np.abs(wide).max() < math.sqrt(6 / 10)
    assert np.abs(wide).max() > 2 * math.sqrt(6 / 1000)
    assert np.abs(tall).max() < math.sqrt(6 / 1000)


@pytest.mark.parametrize("name", ["glorot_normal", "he_normal"])
def test_truncated_normal_bounds_and_std(backend, dtype, name):
    shape = (400, 300)
    w = initializers.get(name)(tnrandom.key(5, backend), shape, dtype)
    assert tuple(w.shape) == shape and w.dtype == backend.dtype(dtype)
    x = to_numpy(w).astype(np.float64)
    target = _target_std(name, *shape)
    stddev = target / TRUNC_STD  # the pre-truncation scale
    bound = 2.0 * stddev
    assert np.abs(x).max() <= bound * (1 + 1e-6)
    assert np.abs(x).max() > 0.99 * bound  # truncated near 2 stddev, not narrower
    assert np.sum(np.abs(x) >= bound * (1 - 1e-6)) <= 1  # no pile-up from clipping
    assert abs(x.mean()) < 4 * target / math.sqrt(x.size)
    assert abs(x.std() / target - 1.0) < 0.02
    # a truncated normal has far fewer |x| > 1.5 stddev than an untruncated one
    tail = np.mean(np.abs(x) > 1.5 * stddev)
    assert abs(tail - (0.1336 - 0.0455) / 0.9545) < 0.005


@pytest.mark.parametrize("name", ["glorot_normal", "he_normal"])
def test_normal_close_across_backends(backend, dtype, name):
    fn = initializers.get(name)
    ref = fn(tnrandom.key(9, "numpy"), (64, 48), dtype)
    out = to_numpy(fn(tnrandom.key(9, backend), (64, 48), dtype))
    np.testing.assert_allclose(out, ref, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"])
    jitted = backend.jit(lambda k: fn(k, (64, 48), dtype))(tnrandom.key(9, backend))
    np.testing.assert_allclose(to_numpy(jitted), ref, rtol=TOL[dtype]["rtol"],
                               atol=TOL[dtype]["atol"])


def test_zeros(backend, dtype):
    z = initializers.zeros(tnrandom.key(0, backend), (3, 4), dtype)
    assert backends.backend_of(z) is backend
    assert tuple(z.shape) == (3, 4) and z.dtype == backend.dtype(dtype)
    np.testing.assert_array_equal(to_numpy(z), np.zeros((3, 4)))
    z1 = initializers.zeros(tnrandom.key(0, backend), (5,), backend.dtype(dtype))
    assert z1.dtype == backend.dtype(dtype) and tuple(z1.shape) == (5,)


def test_different_keys_differ(backend):
    a = to_numpy(initializers.glorot_uniform(tnrandom.key(1, backend), (8, 8)))
    b = to_numpy(initializers.glorot_uniform(tnrandom.key(2, backend), (8, 8)))
    assert not np.array_equal(a, b)


def test_compute_fans():
    assert initializers.compute_fans((30, 20)) == (30, 20)
    assert initializers.compute_fans((7,)) == (7, 7)
    assert initializers.compute_fans((3, 3, 16, 32)) == (144, 288)
    with pytest.raises(ValueError, match="fan_in"):
        initializers.he_uniform(tnrandom.key(0, "numpy"), (0, 5))


def test_get():
    for name in ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "zeros"):
        assert initializers.get(name) is getattr(initializers, name)
    assert initializers.get(" He_Normal ") is initializers.he_normal

    def custom(key, shape, dtype):
        return initializers.zeros(key, shape, dtype)

    assert initializers.get(custom) is custom
    with pytest.raises(ValueError) as err:
        initializers.get("xavier")
    for name in ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "zeros"):
        assert name in str(err.value)
    with pytest.raises(ValueError):
        initializers.get(3)
