"""tinynet.validation: the NaN/Inf check of model inputs (the error
messages themselves are in test_errors.py)."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import backends
from tinynet import validation


@pytest.fixture
def jax_backend():
    loaded, why = backends.probe("jax")
    if loaded is None:
        pytest.skip(why)
    return loaded


def test_immutable_arrays_found_finite_are_not_summed_again(jax_backend, monkeypatch):
    """A JAX array cannot change, so a second check of the same array (a
    second fit call on the same device data) reads no data; another array,
    or one with a NaN, is still checked."""
    good = jax_backend.asarray(np.ones((40, 3), np.float32))
    validation.check_finite(good, "fit")
    sums = []
    real_sum = jax_backend.xp.sum
    monkeypatch.setattr(jax_backend.xp, "sum", lambda a, *k, **kw: sums.append(1) or real_sum(a))
    validation.check_finite(good, "fit")
    assert sums == []
    bad = jax_backend.asarray(np.array([[1.0, 2.0], [3.0, np.inf]], np.float32))
    with pytest.raises(ValueError, match=r"input value inf at position \(1, 1\) is not finite"):
        validation.check_finite(bad, "fit")
    with pytest.raises(ValueError, match="not finite"):  # a bad array is never remembered
        validation.check_finite(bad, "fit")
    assert len(sums) == 2
    other = jax_backend.asarray(np.ones((40, 3), np.float32))  # equal values, new array
    validation.check_finite(other, "fit")
    assert len(sums) == 3


def test_the_record_of_a_finite_array_dies_with_it(jax_backend):
    a = jax_backend.asarray(np.zeros(5, np.float32))
    validation.check_finite(a, "fit")
    key = id(a)
    assert key in validation._FINITE
    del a
    gc.collect()
    assert key not in validation._FINITE


def test_mutable_arrays_are_checked_every_time():
    """NumPy arrays can be written in place between two fit calls: no record."""
    x = np.ones((4, 2), np.float32)
    validation.check_finite(x, "fit")
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"position \(2, 1\)"):
        validation.check_finite(x, "fit")
