"""Every backend's ops overrides against the portable versions of the base
class (``tinynet.backends.ops.Ops``), on the same arrays."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from helpers import assert_close, to_numpy

from tinynet import backends
from tinynet.backends.ops import Ops

# Ops that only describe or move data (no maths to compare); every other
# override must be in TESTED, so a new override cannot come without a test.
PLUMBING = {
    "asarray", "to_numpy", "is_traced", "jit", "scope", "synchronize", "ignore_fp_errors",
    "compiles", "fori_loop", "dtype", "default_float_dtype", "host_value",
    "device_of",
}  # fmt: skip
TESTED = {"matmul_tn", "rows", "run_block", "device_mesh", "scatter_add", "threefry2x32"}
TESTED |= {"conv", "conv_backward"}  # convolution and pooling, below
# device_mesh: tests/test_parallel.py; dtype (torch on MPS refuses float64): test_torch_backend.py


def _overrides(ops) -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(type(ops))
        if not name.startswith("_")
        and name in Ops.__dict__
        and (callable(member) or isinstance(member, property))
        and member is not Ops.__dict__[name]
        and getattr(type(ops), name) is not getattr(Ops, name)
    }


def test_every_override_is_tested_here(backend):
    assert _overrides(backend) - PLUMBING <= TESTED, type(backend).__name__


@pytest.mark.parametrize("shape", [(300, 64, 3), (128, 256, 128), (7, 5, 2)])
def test_matmul_tn_equals_the_portable_product(backend, dtype, shape):
    n, k, m = shape
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(n, k)), rng.normal(size=(n, m))
    got = backend.matmul_tn(backend.asarray(a, dtype), backend.asarray(b, dtype))
    portable = Ops.matmul_tn(backend, backend.asarray(a, dtype), backend.asarray(b, dtype))
    assert tuple(got.shape) == (k, m)
    scale = max(1.0, float(np.sqrt(n)))  # sums of n products round differently
    assert_close(got, to_numpy(portable), dtype, "matmul_tn", scale=scale)
    assert_close(got, a.T @ b, dtype, "matmul_tn vs float64", scale=scale)


def test_rows_with_a_counter_inside_a_compiled_function(backend):
    x = backend.asarray(np.arange(40.0).reshape(10, 4), "float64")
    rows = backend.jit(lambda x, i: backend.rows(x, i * 3, 3))
    for i in range(3):
        got = rows(x, backend.asarray(i, "int32"))
        np.testing.assert_array_equal(to_numpy(got), to_numpy(Ops.rows(backend, x, i * 3, 3)))


def _num(a) -> float:
    return float(a)  # a Python number or a 0-d array of any backend


def _start(backend) -> tuple:
    # fresh each call: a compiling backend donates the carry it is given
    return backend.asarray(0.0, "float64"), backend.asarray(0, "int32")


def _counting_step(carry, data):
    total, i = carry
    (values,) = data
    return total + values[i], i + 1


def _guard_negative(backend):
    xp = backend.xp
    return lambda carry: xp.astype(carry[0] < 0, xp.int32)


@pytest.mark.parametrize("guarded", [False, True])
def test_run_block_equals_the_portable_loop(backend, guarded):
    values = backend.asarray([1.0, 2.0, -10.0, 4.0, 5.0], "float64")
    guard = _guard_negative(backend) if guarded else None
    for n in (1, 2, 5):
        got, status = backend.run_block(_counting_step, n, _start(backend), (values,), guard)
        want, want_status = Ops.run_block(
            backend, _counting_step, n, _start(backend), (values,), guard
        )
        assert [_num(a) for a in got] == [_num(a) for a in want]
        assert _num(status) == want_status
    # 5 steps: the guarded run keeps the carry from before the step that went negative
    result = (_num(got[0]), _num(got[1]), _num(status))
    assert result == ((3.0, 2, 1) if guarded else (2.0, 5, 0))


def test_run_block_stops_between_steps_when_asked(backend):
    """Eager backends end a block at a Ctrl-C between two steps; a compiling
    backend finishes the block it runs."""
    values = backend.asarray(np.ones(6), "float64")
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2

    got, status = backend.run_block(_counting_step, 6, _start(backend), (values,), None, stop)
    expected = 6 if backend.compiles else 2
    assert _num(got[1]) == expected and _num(status) == 0


def test_all_finite(backend):
    ok = [backend.asarray(np.ones((2, 3)), "float32"), backend.asarray(np.zeros(4), "float32")]
    bad = ok + [backend.asarray([1.0, np.inf], "float32")]
    assert bool(to_numpy(backend.all_finite(ok)))
    assert not bool(to_numpy(backend.all_finite(bad)))
    assert bool(to_numpy(backend.all_finite([])))


def test_the_backend_registry_hands_out_one_ops_object_per_backend(backend):
    assert backends.load(backend.name) is backend
    assert backends.backend_of(backend.asarray([1.0], "float32")) is backend
    assert isinstance(backend, Ops) and backends.Backend is Ops


def _scatter_add_reference(indices: np.ndarray, values: np.ndarray, rows: int) -> np.ndarray:
    """A float64 loop, one row at a time (independent of every backend's op)."""
    out = np.zeros((rows, values.shape[1]))
    for i, r in enumerate(indices):
        out[r] += values[i]
    return out


@pytest.mark.parametrize("index_dtype", ["int32", "int64"])
@pytest.mark.parametrize("case", [(40, 7, 3), (5, 1, 12), (200, 33, 16), (1, 4, 2)])
def test_scatter_add_equals_the_portable_one_hot_product(backend, dtype, index_dtype, case):
    m, rows, d = case  # m indices into `rows` rows of width d; m > rows forces repeats
    rng = np.random.default_rng(m + rows)
    indices = rng.integers(0, rows, size=m)
    indices[: min(m, 3)] = rows - 1  # a repeated index (accumulates) and the last row
    values = rng.normal(size=(m, d))
    idx, vals = backend.asarray(indices, index_dtype), backend.asarray(values, dtype)
    got = backend.scatter_add(idx, vals, rows)
    portable = Ops.scatter_add(backend, idx, vals, rows)
    compiled = backend.jit(lambda i, v: backend.scatter_add(i, v, rows))(idx, vals)
    expected = _scatter_add_reference(indices, values, rows)
    for what, a in (("override", got), ("portable", portable), ("compiled", compiled)):
        assert tuple(a.shape) == (rows, d), what
        assert backend.dtype(a.dtype) == backend.dtype(dtype), what
        assert_close(a, expected, dtype, f"scatter_add {what}", scale=max(1.0, m / rows))
    assert_close(got, to_numpy(portable), dtype, "override vs portable", scale=max(1.0, m / rows))
    untouched = sorted(set(range(rows)) - set(indices.tolist()))
    assert not np.any(to_numpy(got)[untouched]), "rows no index points to stay exactly 0"


# ------------------------------------------------------------ convolution and pooling

# x shape (padded), kernel, strides, dilation
CONV_CASES = [
    ((2, 8, 7, 3), (3, 3), (1, 1), (1, 1)),
    ((3, 9, 8, 2), (2, 3), (2, 3), (1, 1)),
    ((1, 9, 9, 4), (3, 2), (1, 1), (2, 3)),
    ((2, 10, 3), (4,), (3,), (1,)),
    ((3, 11, 2), (3,), (1,), (2,)),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_and_its_backward_equal_the_portable_versions(backend, dtype, case):
    x_shape, window, strides, dilation = case
    rng = np.random.default_rng(len(x_shape) + sum(window))
    x = backend.asarray(rng.normal(size=x_shape), dtype)
    W = backend.asarray(rng.normal(size=(*window, x_shape[-1], 5)), dtype)
    y, saved = backend.conv(x, W, strides, dilation)
    y_ref, saved_ref = Ops.conv(backend, x, W, strides, dilation)
    assert tuple(y.shape) == tuple(y_ref.shape) and y.dtype == y_ref.dtype
    taps = float(np.prod(window) * x_shape[-1])
    assert_close(y, to_numpy(y_ref), dtype, "conv", scale=taps)
    dy = backend.asarray(rng.normal(size=tuple(y.shape)), dtype)
    for need_dx in (True, False):
        dx, dW = backend.conv_backward(dy, saved, x_shape, W, strides, dilation, need_dx)
        dx_ref, dW_ref = Ops.conv_backward(backend, dy, saved_ref, x_shape, W, strides, dilation)
        terms = float(np.prod(y.shape[:-1]))
        assert_close(dW, to_numpy(dW_ref), dtype, "conv dW", scale=terms)
        if need_dx:
            assert_close(dx, to_numpy(dx_ref), dtype, "conv dx", scale=taps)
        else:
            assert dx is None


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_col2im_is_the_adjoint_of_im2col(backend, case):
    """<im2col(x), c> == <x, col2im(c)> for every x and c (float64)."""
    x_shape, window, strides, dilation = case
    rng = np.random.default_rng(1)
    x = rng.normal(size=x_shape)
    cols = backend.im2col(backend.asarray(x, "float64"), window, strides, dilation)
    c = rng.normal(size=tuple(cols.shape))
    back = backend.col2im(backend.asarray(c, "float64"), x_shape, window, strides, dilation)
    assert tuple(back.shape) == x_shape
    left, right = float(np.sum(to_numpy(cols) * c)), float(np.sum(x * to_numpy(back)))
    assert abs(left - right) <= 1e-12 * max(1.0, abs(left))
    # and im2col holds the windows themselves: window p of output (0, ..., 0)
    first = to_numpy(cols)[(0,) * (len(x_shape) - 1)]  # (P, channels)
    offsets = np.stack(np.meshgrid(*map(np.arange, window), indexing="ij"), -1).reshape(
        -1, len(window)
    )
    for p, offset in enumerate(offsets):
        np.testing.assert_array_equal(first[p], x[(0, *(offset * np.asarray(dilation)))])


def test_pad_adds_constant_borders(backend):
    x = backend.asarray(np.ones((1, 2, 3, 1)), "float32")
    got = to_numpy(backend.pad(x, ((1, 0), (0, 2)), -np.inf))
    assert got.shape == (1, 3, 5, 1) and got.dtype == np.float32
    np.testing.assert_array_equal(got[0, 1:, :3, 0], np.ones((2, 3)))
    assert np.isneginf(got[0, 0, :, 0]).all() and np.isneginf(got[0, :, 3:, 0]).all()


def test_threefry2x32_equals_the_portable_uint32_block(backend):
    """Every backend's block against the portable one run on NumPy (PyTorch
    cannot run the portable one: its uint32 has no addition), on words that
    reach every carry and rotation edge, with a key broadcast over them."""
    numpy_ops = backends.load("numpy")
    words = np.random.default_rng(11).integers(0, 2**32, size=(4, 300), dtype=np.uint64)
    words[:, :4] = [[0, 2**32 - 1, 1, 2**31], [2**32 - 1, 0, 2**31, 1]] * 2
    w = words.astype(np.uint32)
    k0, k1 = w[0, :1], w[1, :1]
    want = Ops.threefry2x32(numpy_ops, k0, k1, w[2], w[3])
    args = [backend.asarray(a, "uint32") for a in (k0, k1, w[2], w[3])]
    got = backend.jit(backend.threefry2x32)(*args)
    for g, e in zip(got, want, strict=True):
        assert g.dtype == backend.dtype("uint32")
        np.testing.assert_array_equal(to_numpy(g), e)


# Max pooling overrides (NumPy's in-place maxima, torch's own kernels)
# against the portable ops, over every backend.  ``which`` is each backend's
# own form (torch: indices into the input), so the override is judged by
# the maxima and by dx: every window's dy lands on one element, its first
# maximum.
TESTED |= {"max_pool", "max_pool_backward"}


POOL_CASES = [
    ((2, 4, 6, 3), (2, 2), (2, 2)),  # windows tile the input
    ((2, 5, 7, 2), (2, 3), (2, 3)),  # tile, with a cropped border
    ((1, 7, 7, 2), (3, 3), (2, 2)),  # overlapping windows
    ((2, 8, 7, 1), (2, 2), (3, 3)),  # gaps between windows
    ((3, 9, 2), (3,), (3,)),  # 1-D, tiled
    ((3, 10, 2), (3,), (2,)),  # 1-D, overlapping
]


@pytest.mark.parametrize("data", ["distinct", "ties", "nan"])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_max_pool_and_its_backward_equal_the_portable_versions(backend, dtype, case, data):
    """Same maxima and the same dx: each window's gradient goes to its FIRST
    maximum on ties (and to the window's first element for a NaN maximum)."""
    x_shape, window, strides = case
    rng = np.random.default_rng(sum(x_shape) + len(data))
    ties = data == "ties"
    x_np = rng.integers(0, 3, size=x_shape) if ties else rng.normal(size=x_shape)
    if data == "nan":  # a NaN late in the first window and in a later one
        x_np[(0, *(k - 1 for k in window), 0)] = np.nan
        x_np[(-1, *(min(n - 1, k) for n, k in zip(x_shape[1:-1], window)), -1)] = np.nan
    x = backend.asarray(x_np, dtype)
    y, which = backend.max_pool(x, window, strides)
    y_ref, which_ref = Ops.max_pool(backend, x, window, strides)
    assert tuple(y.shape) == tuple(y_ref.shape) and y.dtype == y_ref.dtype
    np.testing.assert_array_equal(to_numpy(y), to_numpy(y_ref))
    dy = backend.asarray(rng.normal(size=tuple(y.shape)), dtype)
    dx = backend.max_pool_backward(dy, which, x_shape, window, strides)
    dx_ref = Ops.max_pool_backward(backend, dy, which_ref, x_shape, window, strides)
    assert tuple(dx.shape) == x_shape and dx.dtype == dx_ref.dtype
    np.testing.assert_array_equal(to_numpy(dx), to_numpy(dx_ref))
