"""The NumPy backend's C loops outside the optimizers (``backends/_fused.c``):
the reductions behind ``xp.sum``/``xp.max`` over one axis of a 2-D array and
ReLU's backward.  Each must give exactly NumPy's own result (the optional C
extension may be missing, and then NumPy's expression runs: both must agree
bit for bit), checked here against ``np.add.reduce``/``np.maximum.reduce``
and the array-API expression over many shapes and special values."""

from __future__ import annotations

import numpy as np
import pytest

import backends
from backends import _numpy_kernels, _numpy_xp

needs_c_loop = pytest.mark.skipif(
    _numpy_xp._fused is None, reason="backends._fused was not built (no C compiler at install)"
)

ROWS = (1, 2, 3, 7, 8, 9, 17, 128, 129, 300)
COLS = (1, 2, 3, 7, 8, 9, 10, 16, 17, 64, 127, 128, 129, 130, 300)
SPECIAL = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1.0, -1.0, 1e-45, -2.5, 3e38])


def _bits_equal(a, b) -> bool:
    """Equal values, dtypes, shapes and signs of zero; NaN equals NaN (which
    NaN comes out where two meet is the CPU's choice, not NumPy's)."""
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and np.array_equal(a, b, equal_nan=True)
        and np.array_equal(np.signbit(a[~np.isnan(a)]), np.signbit(b[~np.isnan(b)]))
    )


def _reductions(a):
    """(what xp computes, what NumPy computes) for every axis/keepdims case."""
    for axis in (0, 1, -1):
        for keepdims in (False, True):
            yield (
                _numpy_xp.sum(a, axis=axis, keepdims=keepdims),
                np.add.reduce(a, axis=axis, keepdims=keepdims),
                f"sum axis={axis} keepdims={keepdims}",
            )
            yield (
                _numpy_xp.max(a, axis=axis, keepdims=keepdims),
                np.maximum.reduce(a, axis=axis, keepdims=keepdims),
                f"max axis={axis} keepdims={keepdims}",
            )


@needs_c_loop
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reductions_give_numpys_bits_on_random_data(dtype):
    rng = np.random.default_rng(11)
    for rows in ROWS:
        for cols in COLS:
            # magnitudes over 1e-2..1e4, so the order of additions shows in the bits
            a = rng.standard_normal((rows, cols)) * rng.uniform(1e-2, 1e4, (rows, cols))
            a = a.astype(dtype)
            for got, want, what in _reductions(a):
                assert _bits_equal(got, want), f"{what} of {a.shape} {dtype}"


@needs_c_loop
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reductions_give_numpys_bits_on_special_values(dtype):
    """Signed zeros (NumPy sums from 0.0, and its maximum takes the later of
    two equal values), NaN propagation, infinities, subnormals, overflow."""
    rng = np.random.default_rng(12)
    with np.errstate(all="ignore"):
        for shape in [(50, 3), (40, 10), (9, 2), (30, 200), (20, 1), (1, 9)]:
            for _ in range(40):
                a = rng.choice(SPECIAL, shape).astype(dtype)
                for got, want, what in _reductions(a):
                    assert _bits_equal(got, want), f"{what} of {a.tolist()}"
        for row in ([0.0, -0.0], [-0.0, 0.0], [-0.0, -0.0], [-0.0, 0.0, -0.0]):
            a = np.array([row] * 3, dtype)
            for got, want, what in _reductions(a):
                assert _bits_equal(got, want), f"{what} of {row}"


def test_reductions_fall_back_to_numpy_where_the_c_loop_does_not_apply():
    """Other ranks, dtypes, layouts, sizes and arguments: NumPy's reduce,
    with its results (and a C loop that is not built changes nothing)."""
    rng = np.random.default_rng(13)
    cases = [
        rng.standard_normal((4, 5, 6)).astype("float32"),  # 3-D
        rng.standard_normal(7).astype("float32"),  # 1-D
        np.asfortranarray(rng.standard_normal((30, 20))),  # not C-contiguous
        rng.standard_normal((40, 30))[::2],  # a strided view
        rng.integers(-5, 5, (6, 4)),  # integers
        rng.standard_normal((3, 4)).astype("float16"),
        rng.standard_normal((600, 200)).astype("float32"),  # above FUSED_MAX_SIZE
        rng.standard_normal((5, 40)).astype("float32"),  # max over rows longer than 32
        np.zeros((0, 3), "float32"),  # empty
    ]
    for a in cases:
        for axis in (0, -1, None):
            got = _numpy_xp.sum(a, axis=axis)
            assert _bits_equal(np.asarray(got), np.asarray(np.add.reduce(a, axis=axis)))
            if a.size:
                got = _numpy_xp.max(a, axis=axis)
                assert _bits_equal(np.asarray(got), np.asarray(np.maximum.reduce(a, axis=axis)))
    a = rng.standard_normal((8, 3)).astype("float32")
    got = _numpy_xp.sum(a, axis=0, dtype="float64")
    assert got.dtype == np.float64
    assert np.array_equal(got, np.add.reduce(a, axis=0, dtype="float64"))


@needs_c_loop
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relu_grad_is_the_array_api_expression_bit_for_bit(dtype):
    relu_grad = backends.fused(backends.load("numpy").xp, "relu_grad")
    assert relu_grad is _numpy_kernels.relu_grad is not None
    rng = np.random.default_rng(14)
    with np.errstate(all="ignore"):
        for shape in [(300, 64), (1, 1), (7,), (3, 4, 5), (0, 4)]:
            x = rng.choice(SPECIAL, shape).astype(dtype)
            dy = rng.choice(SPECIAL, shape).astype(dtype)
            want = dy * np.astype(x > 0, dy.dtype)
            assert _bits_equal(relu_grad(dy, x), want), shape
        # NumPy's expression where the C loop does not take the arrays
        x = rng.standard_normal((6, 5)).astype(dtype)
        for dy in (
            rng.standard_normal((6, 5)).astype("float64" if dtype == "float32" else "float32"),
            np.asfortranarray(rng.standard_normal((6, 5)).astype(dtype)),
            rng.standard_normal((1, 5)).astype(dtype),  # broadcast
        ):
            want = dy * np.astype(x > 0, dy.dtype)
            assert _bits_equal(relu_grad(dy, x), want)
        dy = rng.standard_normal((6, 5)).astype(dtype)
        assert _bits_equal(relu_grad(dy, dy), dy * np.astype(dy > 0, dy.dtype))  # shared input


def test_each_backend_has_its_own_fused_kernels(backend):
    """NumPy: relu_grad; JAX on CPU: matmul_tn; other backends run the
    layers' array-API expressions."""
    relu_grad = backends.fused(backend.xp, "relu_grad")
    matmul_tn = backends.fused(backend.xp, "matmul_tn")
    assert relu_grad is (_numpy_kernels.relu_grad if backend.name == "numpy" else None)
    cpu_jax = backend.name == "jax" and backend.device.platform == "cpu"
    assert (matmul_tn is not None) == cpu_jax
    assert backends.fused(backend.xp, "no_such_kernel") is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_matmul_tn_is_the_transposed_product(dtype):
    """``a.T @ b``, for small products as a broadcast product summed over the
    batch (faster on XLA's CPU runtime): the same product within float
    rounding, eagerly and under jit, on both sides of the size limit and for
    1-D operands."""
    bk, why = backends.probe("jax")
    if bk is None:
        pytest.skip(why)
    matmul_tn = backends.fused(bk.xp, "matmul_tn")
    if matmul_tn is None:
        pytest.skip(f"JAX runs on {bk.device.platform}: matmul_tn is a CPU kernel")
    import jax

    from backends import _jax

    rng = np.random.default_rng(15)
    tol = {"float32": 2e-5, "float64": 1e-12}[dtype]
    limit = _jax.TN_MAX_PRODUCTS
    for n, k, m in [(300, 64, 3), (300, 2, 64), (1, 3, 2), (limit // 64, 16, 4),
                    (limit // 64 + 1, 16, 4), (128, 128, 10)]:  # fmt: skip
        a = rng.standard_normal((n, k))
        b = rng.standard_normal((n, m))
        want = a.T @ b  # float64 NumPy
        for fn in (matmul_tn, jax.jit(matmul_tn)):
            got = np.asarray(fn(bk.asarray(a, dtype), bk.asarray(b, dtype)))
            assert got.shape == (k, m) and got.dtype == dtype
            scale = np.abs(a).T @ np.abs(b)
            assert np.all(np.abs(got - want) <= tol * scale), (n, k, m)
    a, v = rng.standard_normal((6, 3)), rng.standard_normal(6)
    got = np.asarray(matmul_tn(bk.asarray(a, dtype), bk.asarray(v, dtype)))
    np.testing.assert_allclose(got, a.T @ v, rtol=tol * 10)


@needs_c_loop
def test_c_reductions_check_their_buffers():
    fused = _numpy_xp._fused
    a = np.ones((3, 4), "float32")
    with pytest.raises(ValueError, match=r"_fused.colsum: out must hold 4 values"):
        fused.colsum(a, np.empty(3, "float32"))
    with pytest.raises(ValueError, match=r"_fused.rowsum: out must hold 3 values"):
        fused.rowsum(a, np.empty(3, "float64"))
    with pytest.raises(ValueError, match=r"non-empty 2-D"):
        fused.rowmax(np.ones(5, "float32"), np.empty(5, "float32"))
    with pytest.raises(TypeError, match=r"a must be a C-contiguous"):
        fused.colsum(np.asfortranarray(a), np.empty(4, "float32"))
    with pytest.raises(ValueError, match=r"share memory"):
        fused.rowsum(a, a.reshape(-1)[:3])
    with pytest.raises(ValueError, match=r"_fused.relu_grad: dy .* does not match out"):
        fused.relu_grad(np.ones(3, "float64"), np.ones(3, "float32"), np.empty(3, "float32"))
    with pytest.raises(ValueError, match=r"out and dy share memory"):
        fused.relu_grad(a, a, a)


@needs_c_loop
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_hot_is_the_array_api_expression(dtype):
    """Every integer label type, labels out of range (negative, >= k, beyond
    int64 for uint64) giving rows of zeros, and NumPy's expression for what
    the C loop does not take."""
    one_hot = backends.fused(backends.load("numpy").xp, "one_hot")
    assert one_hot is _numpy_kernels.one_hot is not None
    rng = np.random.default_rng(16)
    for label_dtype in ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]:
        info = np.iinfo(label_dtype)
        labels = rng.integers(max(info.min, -3), 7, 300).astype(label_dtype)
        labels[:3] = [info.max, info.min, 0]
        for k in (1, 3, 5):
            got = one_hot(labels, k, dtype)
            want = np.astype(labels[:, None] == np.arange(k, dtype=labels.dtype), dtype)
            assert _bits_equal(got, want), (label_dtype, k)
    labels = np.arange(12).reshape(3, 4)[:, 1]  # strided: NumPy's expression
    want = np.astype(labels[:, None] == np.arange(6), dtype)
    assert _bits_equal(one_hot(labels, 6, dtype), want)
    empty = np.zeros(0, "int64")
    assert one_hot(empty, 4, dtype).shape == (0, 4)


@needs_c_loop
def test_c_one_hot_checks_its_buffers():
    fused = _numpy_xp._fused
    with pytest.raises(ValueError, match=r"labels must be a 1-D integer array"):
        fused.one_hot(np.zeros(3, "float32"), np.empty((3, 2), "float32"))
    with pytest.raises(ValueError, match=r"out must be a float32 or float64 array of shape \(3,"):
        fused.one_hot(np.zeros(3, "int64"), np.empty((4, 2), "float32"))
    with pytest.raises(TypeError, match=r"out must be a writable"):
        fused.one_hot(np.zeros(3, "int64"), np.asfortranarray(np.empty((3, 2), "float32")))


@needs_c_loop
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_argmax_hits_is_the_accuracy_expression(dtype):
    """The sparse accuracy's count by the C loop equals NumPy's
    ``sum(astype(argmax(s, -1) == labels, dtype))``: ties (first index
    wins), NaN (the first NaN is the argmax), +-Inf, labels out of range, every
    integer label type, one class; NumPy's expression for what the loop does
    not take (strided, big-endian, labels of another shape)."""
    hits = backends.fused(backends.load("numpy").xp, "argmax_hits")
    assert hits is _numpy_kernels.argmax_hits is not None
    rng = np.random.default_rng(19)

    def want(s, labels):
        return np.sum(np.astype(np.argmax(s, axis=-1) == labels, s.dtype))

    for k in (1, 2, 3, 10):
        s = rng.integers(-2, 3, (400, k)).astype(dtype)  # many ties
        s[rng.random(s.shape) < 0.05] = np.nan
        s[rng.random(s.shape) < 0.05] = np.inf
        s[rng.random(s.shape) < 0.05] = -np.inf
        for label_dtype in "int8 int16 int32 int64 uint8 uint16 uint32 uint64".split():
            info = np.iinfo(label_dtype)
            labels = rng.integers(max(info.min, -2), k + 2, 400).astype(label_dtype)
            labels[:2] = [info.max, info.min]
            got = hits(s, labels)
            assert got.dtype == s.dtype and got.shape == ()
            assert got == want(s, labels) > 0, (k, label_dtype)
    s = rng.standard_normal((6, 4)).astype(dtype)
    labels = np.argmax(s, axis=-1)
    assert hits(s, labels) == 6 and hits(s, (labels + 1) % 4) == 0
    for odd_s, odd_labels in [
        (s[:, ::2], labels),  # strided scores
        (s, np.arange(12)[::2]),  # strided labels
        (s.astype(s.dtype.newbyteorder(">")), labels),  # big-endian
        (s, labels.astype(">i8")),
        (s, labels[:, None]),  # another shape: NumPy broadcasts
    ]:
        got = hits(odd_s, odd_labels)
        np.testing.assert_array_equal(got, want(odd_s, odd_labels))
        assert got.dtype == want(odd_s, odd_labels).dtype


@needs_c_loop
def test_c_argmax_hits_checks_its_buffers():
    fused = _numpy_xp._fused
    with pytest.raises(ValueError, match=r"scores must be a float32 or float64 array of shape"):
        fused.argmax_hits(np.zeros((3, 2), "int64"), np.zeros(3, "int64"))
    with pytest.raises(ValueError, match=r"k >= 1"):
        fused.argmax_hits(np.zeros((3, 0), "float32"), np.zeros(3, "int64"))
    with pytest.raises(ValueError, match=r"labels must be a 1-D integer array of length 3"):
        fused.argmax_hits(np.zeros((3, 2), "float32"), np.zeros(4, "int64"))
    with pytest.raises(ValueError, match=r"labels must be a 1-D integer array"):
        fused.argmax_hits(np.zeros((3, 2), "float32"), np.zeros(3, "float32"))
    with pytest.raises(TypeError, match=r"scores must be a C-contiguous"):
        fused.argmax_hits(np.zeros((3, 4), "float32")[:, ::2], np.zeros(3, "int64"))


def test_numpy_xp_method_shortcuts_equal_numpy_functions():
    """``take``/``argmax``/``astype`` call the ndarray methods (NumPy's
    function forms add a Python wrapper): the same results, also for NumPy
    scalars and with every keyword."""
    rng = np.random.default_rng(17)
    a = rng.standard_normal((6, 4)).astype("float32")
    a[2, 1] = a[2, 3] = a[2].max() + 1  # a tie: the first index wins
    a[4, 2] = np.nan  # NaN counts as the maximum
    idx = np.array([3, 0, 3])
    for got, want in [
        (_numpy_xp.take(a, idx, axis=0), np.take(a, idx, axis=0)),
        (_numpy_xp.take(a, idx), np.take(a, idx)),
        (_numpy_xp.take(np.float32(2.0), np.array([0, 0])), np.take(np.float32(2.0), [0, 0])),
        (_numpy_xp.argmax(a, axis=-1), np.argmax(a, axis=-1)),
        (_numpy_xp.argmax(a, axis=0, keepdims=True), np.argmax(a, axis=0, keepdims=True)),
        (_numpy_xp.argmax(a), np.argmax(a)),
        (_numpy_xp.astype(a > 0, np.float64), np.astype(a > 0, np.float64)),
        (_numpy_xp.astype(np.int64(3), np.float32), np.astype(np.int64(3), np.float32)),
    ]:
        assert type(got) is type(want) and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert _numpy_xp.astype(a, np.float32, copy=False) is a
    assert _numpy_xp.astype(a, np.float32) is not a


def test_non_native_byte_order_takes_numpys_path():
    """Big-endian arrays (read from a file, say) are not what the C loops
    read: NumPy's own operations run, with NumPy's results, and a donated
    update of big-endian parameters is the pure update."""
    from tinynet.optimizers import SGD, Adam

    rng = np.random.default_rng(18)
    a = rng.standard_normal((7, 5)).astype(">f4")
    for axis in (0, 1, -1):
        np.testing.assert_array_equal(_numpy_xp.sum(a, axis=axis), np.add.reduce(a, axis=axis))
        np.testing.assert_array_equal(_numpy_xp.max(a, axis=axis), np.maximum.reduce(a, axis=axis))
    bk = backends.load("numpy")
    relu_grad, one_hot = bk.fused.relu_grad, bk.fused.one_hot
    if relu_grad is not None:
        np.testing.assert_array_equal(relu_grad(a, a), a * np.astype(a > 0, a.dtype))
        labels = np.array([2, 0, 9, -1], ">i8")
        want = np.astype(labels[:, None] == np.arange(3, dtype=labels.dtype), "float32")
        np.testing.assert_array_equal(one_hot(labels, 3, "float32"), want)
    for opt in (Adam(0.01), SGD(0.1)):
        params = [{"W": rng.standard_normal((4, 3)).astype(">f4"), "b": np.ones(3, ">f4")}]
        grads = [{"W": rng.standard_normal((4, 3)).astype("float32"), "b": np.ones(3, "f4")}]
        pure_p, _ = opt.update(grads, opt.init(params), params)
        step = bk.jit(lambda p, s, g: opt.update(g, s, p), donate_argnums=(0, 1))  # noqa: B023
        donated_p, _ = step([dict(layer) for layer in params], opt.init(params), grads)
        for key in ("W", "b"):
            np.testing.assert_array_equal(donated_p[0][key], pure_p[0][key])


@needs_c_loop
def test_threefry_words_is_the_array_api_block_function():
    """tinynet.random's draws on NumPy come from the C loop; they must be the
    bits of the array-API Threefry (``random._block``, itself tested against
    ``jax.random``), for edge keys and sizes."""
    from tinynet import random as tnrandom

    words = backends.fused(backends.load("numpy").xp, "threefry_words")
    assert words is _numpy_kernels.threefry_words is not None
    rng = np.random.default_rng(19)
    keys = [(0, 0), (0xFFFFFFFF, 0xFFFFFFFF), (0x1BD11BDA, 0)]
    keys += [tuple(int(k) for k in rng.integers(0, 2**32, 2)) for _ in range(5)]
    for k0, k1 in keys:
        for n in (0, 1, 7, 1000):
            lo = np.arange(n, dtype=np.uint32)
            want = tnrandom._block(
                np.array([k0], np.uint32), np.array([k1], np.uint32), np.zeros_like(lo), lo
            )
            got = words(k0, k1, n)
            for g, w in zip(got, want, strict=True):
                assert g.dtype == np.uint32 and np.array_equal(g, w), (k0, k1, n)
    fused = _numpy_xp._fused
    with pytest.raises(ValueError, match="key words must be uint32"):
        fused.threefry_words(2**32, 0, np.empty(2, np.uint32), np.empty(2, np.uint32))
    with pytest.raises(TypeError, match="w1 has format"):
        fused.threefry_words(1, 2, np.empty(2, np.uint32), np.empty(2, np.int64))
    with pytest.raises(ValueError, match="two separate arrays of one length"):
        fused.threefry_words(1, 2, np.empty(2, np.uint32), np.empty(3, np.uint32))


def _u64_cases():
    """(name, uint64 array): spread, clustered, repeated and extreme values,
    around the kernel's insertion-sort size (32) and bucket-count limit."""
    rng = np.random.default_rng(23)
    top = np.iinfo(np.uint64).max
    for n in (0, 1, 2, 3, 31, 32, 33, 64, 100, 1000, 7680, 70_000, 140_000):
        yield f"random n={n}", rng.integers(0, top, n, dtype=np.uint64, endpoint=True)
    r = rng.integers(0, top, 5000, dtype=np.uint64, endpoint=True)
    yield "sorted", np.sort(r)
    yield "reversed", np.sort(r)[::-1].copy()
    yield "all equal", np.full(1000, 12345, np.uint64)
    yield "two values", rng.choice(np.array([0, top], np.uint64), 3000)
    yield "few values", rng.integers(0, 5, 4000).astype(np.uint64) * np.uint64(2**61)
    # one dense cluster beside one outlier: nearly every value in one bucket
    yield "clustered", np.concatenate([rng.integers(0, 1000, 5000), [2**63]]).astype(np.uint64)
    yield "small range", rng.integers(7, 12, 500).astype(np.uint64)
    yield "powers of two", (np.uint64(1) << np.arange(64, dtype=np.uint64))[::-1].copy()
    yield "extremes", np.array([top, 0, top - 1, 1, top, 0] * 20, np.uint64)
    # the packed draws tinynet.random.permutation sorts
    yield "permutation draws", (r & ~np.uint64(2**13 - 1)) | np.arange(5000, dtype=np.uint64)


_U64_CASES = list(_u64_cases())


@needs_c_loop
@pytest.mark.parametrize("name, a", _U64_CASES, ids=[name for name, _ in _U64_CASES])
def test_c_sort_is_numpys_sort(name, a):
    before = a.copy()
    out = _numpy_xp.sort(a)
    expected = np.sort(a)
    assert out.dtype == expected.dtype and out.shape == expected.shape, name
    np.testing.assert_array_equal(out, expected, err_msg=name)
    np.testing.assert_array_equal(a, before, err_msg=f"{name}: the input was changed")


def test_sort_falls_back_to_numpy_where_the_c_loop_does_not_apply():
    rng = np.random.default_rng(29)
    a = rng.integers(0, 2**63, 200, dtype=np.uint64)
    for x in (
        a[::2],  # strided
        a.astype(">u8"),  # big-endian
        a.astype(np.int64) - 2**62,  # signed
        rng.standard_normal(50),  # float
        a.reshape(20, 10),  # 2-D: sorted along the last axis
    ):
        np.testing.assert_array_equal(_numpy_xp.sort(x), np.sort(x))
    m = a.reshape(20, 10)
    np.testing.assert_array_equal(_numpy_xp.sort(m, axis=0), np.sort(m, axis=0))


@needs_c_loop
def test_c_sort_checks_its_buffers():
    fused = _numpy_xp._fused
    a = np.arange(10, dtype=np.uint64)
    with pytest.raises(TypeError, match=r"a has format .* expected a 1-D uint64 array"):
        fused.sort_u64(a.astype(np.int64), np.empty(10, np.uint64))
    with pytest.raises(TypeError, match=r"out has format .* expected a 1-D uint64 array"):
        fused.sort_u64(a, np.empty((2, 5), np.uint64))
    with pytest.raises(TypeError, match=r"out must be a writable C-contiguous"):
        ro = np.empty(10, np.uint64)
        ro.flags.writeable = False
        fused.sort_u64(a, ro)
    with pytest.raises(ValueError, match=r"two separate arrays of one length"):
        fused.sort_u64(a, np.empty(9, np.uint64))
    with pytest.raises(ValueError, match=r"two separate arrays of one length"):
        fused.sort_u64(a, a)
