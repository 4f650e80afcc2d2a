"""Layers on every backend and dtype: forward against float64 NumPy references
written here (independently of tinynet's maths), backward against central
finite differences, against hand-derived float64 derivatives and, on JAX,
against ``jax.vjp`` of a ``jax.numpy`` re-implementation; plus the numerical
stability promises of the activations (inputs of +-1e4 in float32)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import assert_close, assert_fd_close, central_fd, to_numpy

import tinynet
from tinynet import backends
from tinynet import random as tnrandom


def apply(layer, params, x, ops, training=False, key=None):
    """``(y, backward)`` of a layer without state."""
    y, _, backward = layer.forward(params, {}, x, ops, training, key)
    return y, backward


# Inputs away from every kink (|x| >= 0.15): ReLU/LeakyReLU/ELU are smooth here.
X = np.array(
    [
        [-1.7, 0.35, 2.2, -0.45],
        [0.8, -2.6, -0.15, 1.3],
        [-0.9, 1.85, 0.6, -1.2],
    ]
)
DY = np.array(
    [
        [0.3, -1.1, 0.7, 0.25],
        [-0.6, 0.9, 1.4, -0.35],
        [1.2, 0.05, -0.8, 0.45],
    ]
)
GELU_C = math.sqrt(2.0 / math.pi)


# ------------------------------------------------------------ NumPy references


def _gelu_u(x):
    return GELU_C * (x + 0.044715 * x**3)


def _softmax_ref(x):
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_vjp_ref(x, dy):
    s = _softmax_ref(x)
    jac = np.einsum("ni,ij->nij", s, np.eye(x.shape[-1])) - np.einsum("ni,nj->nij", s, s)
    return np.einsum("nij,ni->nj", jac, dy)


# name -> (layer factory, forward(x), vjp(x, dy)); float64, naive but exact on X.
REFERENCES = {
    "Identity": (tinynet.Identity, lambda x: x, lambda x, dy: dy),
    "Sigmoid": (
        tinynet.Sigmoid,
        lambda x: 1.0 / (1.0 + np.exp(-x)),
        lambda x, dy: dy * np.exp(-x) / (1.0 + np.exp(-x)) ** 2,
    ),
    "Tanh": (
        tinynet.Tanh,
        lambda x: (np.exp(2 * x) - 1.0) / (np.exp(2 * x) + 1.0),
        lambda x, dy: dy / np.cosh(x) ** 2,
    ),
    "ReLU": (
        tinynet.ReLU,
        lambda x: np.where(x > 0, x, 0.0),
        lambda x, dy: dy * (x > 0),
    ),
    "LeakyReLU-default": (
        tinynet.LeakyReLU,  # Keras's default alpha=0.3
        lambda x: np.where(x > 0, x, 0.3 * x),
        lambda x, dy: dy * np.where(x > 0, 1.0, 0.3),
    ),
    "LeakyReLU-0.05": (
        lambda: tinynet.LeakyReLU(0.05),
        lambda x: np.where(x > 0, x, 0.05 * x),
        lambda x, dy: dy * np.where(x > 0, 1.0, 0.05),
    ),
    "ELU-1.0": (
        tinynet.ELU,
        lambda x: np.where(x > 0, x, np.exp(x) - 1.0),
        lambda x, dy: dy * np.where(x > 0, 1.0, np.exp(x)),
    ),
    "ELU-0.7": (
        lambda: tinynet.ELU(0.7),
        lambda x: np.where(x > 0, x, 0.7 * (np.exp(x) - 1.0)),
        lambda x, dy: dy * np.where(x > 0, 1.0, 0.7 * np.exp(x)),
    ),
    "GELU": (
        tinynet.GELU,
        lambda x: 0.5 * x * (1.0 + np.tanh(_gelu_u(x))),
        lambda x, dy: (
            dy
            * (
                0.5 * (1.0 + np.tanh(_gelu_u(x)))
                + 0.5 * x / np.cosh(_gelu_u(x)) ** 2 * GELU_C * (1.0 + 3 * 0.044715 * x**2)
            )
        ),
    ),
    "Softplus": (
        tinynet.Softplus,
        lambda x: np.log(1.0 + np.exp(x)),
        lambda x, dy: dy / (1.0 + np.exp(-x)),
    ),
    "Softmax": (tinynet.Softmax, _softmax_ref, _softmax_vjp_ref),
    "Dropout-eval": (lambda: tinynet.Dropout(0.4), lambda x: x, lambda x, dy: dy),
}
NAMES = list(REFERENCES)


def _jnp_forward(name):
    """The same forwards in jax.numpy, for ``jax.vjp``."""
    import jax.numpy as jnp

    sig = lambda x: 1.0 / (1.0 + jnp.exp(-x))  # noqa: E731
    table = {
        "Identity": lambda x: x,
        "Sigmoid": sig,
        "Tanh": lambda x: (jnp.exp(2 * x) - 1.0) / (jnp.exp(2 * x) + 1.0),
        "ReLU": lambda x: jnp.where(x > 0, x, 0.0),
        "LeakyReLU-default": lambda x: jnp.where(x > 0, x, 0.3 * x),
        "LeakyReLU-0.05": lambda x: jnp.where(x > 0, x, 0.05 * x),
        "ELU-1.0": lambda x: jnp.where(x > 0, x, jnp.exp(x) - 1.0),
        "ELU-0.7": lambda x: jnp.where(x > 0, x, 0.7 * (jnp.exp(x) - 1.0)),
        "GELU": lambda x: 0.5 * x * (1.0 + jnp.tanh(GELU_C * (x + 0.044715 * x**3))),
        "Softplus": lambda x: jnp.log(1.0 + jnp.exp(x)),
        "Softmax": lambda x: jnp.exp(x) / jnp.sum(jnp.exp(x), axis=-1, keepdims=True),
        "Dropout-eval": lambda x: x,
    }
    return table[name]


# ------------------------------------------------------------ helpers


def _rounded(a, dtype):
    """``a`` as the backend will see it in ``dtype``, back in float64."""
    return np.asarray(a, dtype=dtype).astype(np.float64)


# ------------------------------------------------------------ the reference itself


@pytest.mark.parametrize("name", NAMES)
def test_reference_derivatives_match_reference_fd(name):
    """The hand-derived float64 derivatives used below are right (checked once)."""
    _, fwd, vjp = REFERENCES[name]
    numeric = central_fd(lambda x: float(np.sum(fwd(x) * DY)), X)
    assert_fd_close(vjp(X, DY), numeric, name)


# ------------------------------------------------------------ activations


@pytest.mark.parametrize("name", NAMES)
def test_activation_forward(backend, dtype, name):
    make, fwd, _ = REFERENCES[name]
    x = backend.asarray(X, dtype)
    y, _ = apply(make(), {}, x, backend, False, None)
    assert to_numpy(y).dtype == np.dtype(dtype)
    assert tuple(y.shape) == X.shape
    assert_close(y, fwd(_rounded(X, dtype)), dtype, f"{name} forward")


@pytest.mark.parametrize("name", NAMES)
def test_activation_backward_matches_reference(backend, dtype, name):
    make, _, vjp = REFERENCES[name]
    _, back = apply(make(), {}, backend.asarray(X, dtype), backend, False, None)
    dx, grads = back(backend.asarray(DY, dtype))
    assert grads == {}
    assert to_numpy(dx).dtype == np.dtype(dtype)
    assert_close(dx, vjp(_rounded(X, dtype), _rounded(DY, dtype)), dtype, f"{name} backward")


@pytest.mark.parametrize("name", NAMES)
def test_activation_backward_matches_fd_float64(backend, name):
    """The backward against central differences of the library's own forward."""
    layer = REFERENCES[name][0]()

    def f(x):
        y, _ = apply(layer, {}, backend.asarray(x, "float64"), backend, False, None)
        return float(np.sum(to_numpy(y) * DY))

    _, back = apply(layer, {}, backend.asarray(X, "float64"), backend, False, None)
    dx, _ = back(backend.asarray(DY, "float64"))
    assert_fd_close(dx, central_fd(f, X), name)


@pytest.mark.parametrize("name", NAMES)
def test_activation_backward_matches_jax_vjp(jax_backend, name):
    import jax
    import jax.numpy as jnp

    layer = REFERENCES[name][0]()
    x = jnp.asarray(X, dtype=jnp.float64)
    dy = jnp.asarray(DY, dtype=jnp.float64)
    f = _jnp_forward(name)
    y_ref, dx_ref = jax.jit(lambda x, dy: (f(x), jax.vjp(f, x)[1](dy)[0]))(x, dy)
    y, back = apply(layer, {}, x, jax_backend, False, None)
    dx, _ = back(dy)
    assert dx.dtype == jnp.float64
    assert_close(y, np.asarray(y_ref), "float64", f"{name} forward vs jax")
    assert_close(dx, np.asarray(dx_ref), "float64", f"{name} backward vs jax.vjp")


def test_leaky_relu_and_elu_gradient_at_zero_is_the_left_slope(backend):
    """Documented kink conventions (x == 0 is not x > 0)."""
    x = backend.asarray(np.array([[0.0, 1.0]]), "float64")
    dy = backend.asarray(np.array([[1.0, 1.0]]), "float64")
    for layer, expected in (
        (tinynet.ReLU(), [0.0, 1.0]),
        (tinynet.LeakyReLU(0.2), [0.2, 1.0]),
        (tinynet.ELU(0.5), [0.5, 1.0]),
    ):
        _, back = apply(layer, {}, x, backend, False, None)
        np.testing.assert_array_equal(to_numpy(back(dy)[0]), [expected], err_msg=repr(layer))


# ------------------------------------------------------------ Dense

W = np.array([[0.5, -0.3, 0.8], [-1.2, 0.4, 0.1], [0.7, 0.9, -0.6], [0.2, -0.5, 1.1]])
B = np.array([0.1, -0.2, 0.3])
DY3 = np.array([[0.4, -0.7, 1.0], [-1.3, 0.2, 0.6], [0.8, 0.5, -0.9]])


def _dense_params(backend, dtype, w=W, b=B):
    return {"W": backend.asarray(w, dtype), "b": backend.asarray(b, dtype)}


def test_dense_forward(backend, dtype):
    y, _ = apply(
        tinynet.Dense(4, 3),
        _dense_params(backend, dtype),
        backend.asarray(X, dtype),
        backend,
        False,
        None,
    )
    assert to_numpy(y).dtype == np.dtype(dtype)
    x, w, b = _rounded(X, dtype), _rounded(W, dtype), _rounded(B, dtype)
    expected = np.array(
        [[sum(x[n, i] * w[i, j] for i in range(4)) + b[j] for j in range(3)] for n in range(3)]
    )
    assert_close(y, expected, dtype, "Dense forward")


def test_dense_backward_matches_reference(backend, dtype):
    _, back = apply(
        tinynet.Dense(4, 3),
        _dense_params(backend, dtype),
        backend.asarray(X, dtype),
        backend,
        False,
        None,
    )
    dx, grads = back(backend.asarray(DY3, dtype))
    x, w, dy = _rounded(X, dtype), _rounded(W, dtype), _rounded(DY3, dtype)
    assert set(grads) == {"W", "b"}
    assert tuple(grads["W"].shape) == (4, 3) and tuple(grads["b"].shape) == (3,)
    assert_close(grads["W"], np.einsum("ni,nj->ij", x, dy), dtype, "dW")
    assert_close(grads["b"], dy.sum(axis=0), dtype, "db")
    assert_close(dx, np.einsum("nj,ij->ni", dy, w), dtype, "dx")
    none_dx, grads2 = back(backend.asarray(DY3, dtype), need_dx=False)
    assert none_dx is None
    assert_close(grads2["W"], to_numpy(grads["W"]), dtype, "dW without dx")


def test_dense_backward_matches_fd_float64(backend):
    layer = tinynet.Dense(4, 3)

    def value(x, w, b):
        y, _ = apply(
            layer, _dense_params(backend, "float64", w, b), backend.asarray(x, "float64"), backend
        )
        return float(np.sum(to_numpy(y) * DY3))

    _, back = apply(
        layer, _dense_params(backend, "float64"), backend.asarray(X, "float64"), backend
    )
    dx, grads = back(backend.asarray(DY3, "float64"))
    assert_fd_close(dx, central_fd(lambda x: value(x, W, B), X), "dx")
    assert_fd_close(grads["W"], central_fd(lambda w: value(X, w, B), W), "dW")
    assert_fd_close(grads["b"], central_fd(lambda b: value(X, W, b), B), "db")


def test_dense_backward_matches_jax_vjp(jax_backend):
    import jax
    import jax.numpy as jnp

    x, w, b, dy = (jnp.asarray(a, dtype=jnp.float64) for a in (X, W, B, DY3))
    vjp = jax.jit(lambda *a: jax.vjp(lambda x, w, b: jnp.matmul(x, w) + b, *a[:3])[1](a[3]))
    dx_ref, dw_ref, db_ref = vjp(x, w, b, dy)
    _, back = apply(tinynet.Dense(4, 3), {"W": w, "b": b}, x, jax_backend)
    dx, grads = back(dy)
    assert_close(dx, np.asarray(dx_ref), "float64", "dx")
    assert_close(grads["W"], np.asarray(dw_ref), "float64", "dW")
    assert_close(grads["b"], np.asarray(db_ref), "float64", "db")


def test_dense_init_shapes_dtype_and_glorot_bound(backend, dtype):
    out, params, state = tinynet.Dense(4, 3).init(
        tnrandom.key(3, backend), (4,), backend.dtype(dtype)
    )
    assert out == (3,) and state == {}
    w, b = to_numpy(params["W"]), to_numpy(params["b"])
    assert w.shape == (4, 3) and b.shape == (3,)
    assert w.dtype == np.dtype(dtype) and b.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(b, 0.0)
    limit = math.sqrt(6.0 / (4 + 3))
    assert np.all(np.abs(w) <= limit) and np.std(w) > 0.05


# ------------------------------------------------------------ Dropout

RATE = 0.4


def test_dropout_eval_is_identity_even_with_a_key(backend, dtype):
    x = backend.asarray(X, dtype)
    y, back = apply(tinynet.Dropout(RATE), {}, x, backend, False, tnrandom.key(1, backend))
    np.testing.assert_array_equal(to_numpy(y), np.asarray(X, dtype))
    np.testing.assert_array_equal(
        to_numpy(back(backend.asarray(DY, dtype))[0]), np.asarray(DY, dtype)
    )


def _dropout_train(backend, dtype, x, seed=11, rate=RATE):
    key = tnrandom.key(seed, backend)
    return apply(tinynet.Dropout(rate), {}, backend.asarray(x, dtype), backend, True, key)


def test_dropout_training_is_mask_times_x_over_keep(backend, dtype):
    y, back = _dropout_train(backend, dtype, X)
    y = to_numpy(y).astype(np.float64)
    kept = y != 0  # X has no zeros
    x = _rounded(X, dtype)
    assert_close(y, np.where(kept, x / (1.0 - RATE), 0.0), dtype, "dropout forward")
    dx, grads = back(backend.asarray(DY, dtype))
    assert grads == {}
    assert_close(
        dx, np.where(kept, _rounded(DY, dtype) / (1.0 - RATE), 0.0), dtype, "dropout backward"
    )


def test_dropout_mask_same_on_every_backend_and_drop_rate(backend):
    x = np.ones((100, 100))
    y = to_numpy(_dropout_train(backend, "float32", x, seed=5)[0])
    with backends.use_backend("numpy") as bk:
        y_np = to_numpy(_dropout_train(bk, "float32", x, seed=5)[0])
    np.testing.assert_array_equal(y, y_np)
    dropped = int(np.sum(y == 0))
    # Binomial(10000, 0.4): mean 4000, sd 49
    assert abs(dropped - 4000) < 250, dropped
    np.testing.assert_allclose(y[y != 0], 1.0 / 0.6, rtol=1e-6)


def test_dropout_mask_is_jax_bernoulli_of_the_same_key(jax_backend):
    """The mask is ``jax.random.uniform(key) < keep`` for the matching JAX key."""
    import jax
    import jax.numpy as jnp

    for seed in (0, 9, 2**40 + 3):
        y = to_numpy(_dropout_train(jax_backend, "float32", X, seed=seed)[0])
        u = jax.random.uniform(jax.random.PRNGKey(seed), X.shape, dtype=jnp.float32)
        np.testing.assert_array_equal(y != 0, np.asarray(u) < np.float32(1.0 - RATE), str(seed))


def test_dropout_training_backward_matches_fd_float64(backend):
    """Same key, same mask: the training forward is linear in x."""

    def f(x):
        return float(np.sum(to_numpy(_dropout_train(backend, "float64", x)[0]) * DY))

    _, back = _dropout_train(backend, "float64", X)
    assert_fd_close(back(backend.asarray(DY, "float64"))[0], central_fd(f, X), "dropout")


def test_dropout_rate_zero_and_missing_key(backend):
    x = backend.asarray(X, "float64")
    y, _ = apply(tinynet.Dropout(0.0), {}, x, backend, True, None)
    np.testing.assert_array_equal(to_numpy(y), X)
    with pytest.raises(ValueError, match="key"):
        apply(tinynet.Dropout(0.5), {}, x, backend, True, None)
    with pytest.raises(ValueError, match="rate"):
        tinynet.Dropout(1.0)


# ------------------------------------------------------------ numerical stability
# One 3 x 4 block of huge and moderate inputs; the references are Python
# ``math`` in float64, elementwise, in forms that cannot overflow.

BIG = np.array([[-1e4, -100.0, -20.0, 0.0], [20.0, 100.0, 1e4, -1e3], [1e3, -50.0, 50.0, 3e3]])


def _math_sigmoid(v):
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


def _math_sech2(u):
    return 0.0 if abs(u) > 350 else 1.0 / math.cosh(u) ** 2


def _math_gelu(v):
    u = GELU_C * (v + 0.044715 * v**3)
    y = 0.5 * v * (1.0 + math.tanh(u))
    return y, 0.5 * (1.0 + math.tanh(u)) + 0.5 * v * _math_sech2(u) * GELU_C * (
        1 + 0.134145 * v * v
    )


MATH_REFERENCES = {  # name -> v -> (y, dy/dx)
    "Sigmoid": lambda v: (_math_sigmoid(v), _math_sigmoid(v) * _math_sigmoid(-v)),
    "Tanh": lambda v: (math.tanh(v), _math_sech2(v)),
    "Softplus": lambda v: (max(v, 0.0) + math.log1p(math.exp(-abs(v))), _math_sigmoid(v)),
    "GELU": _math_gelu,
    "ELU-1.0": lambda v: (v, 1.0) if v > 0 else (math.expm1(v), math.exp(v)),
    "ELU-0.7": lambda v: (v, 1.0) if v > 0 else (0.7 * math.expm1(v), 0.7 * math.exp(v)),
    "ReLU": lambda v: (max(v, 0.0), float(v > 0)),
    "LeakyReLU-default": lambda v: (v, 1.0) if v > 0 else (0.3 * v, 0.3),
}


def _fwd(layer, backend, values, dtype):
    y, back = apply(layer, {}, backend.asarray(values, dtype), backend, False, None)
    dx, _ = back(backend.asarray(np.ones_like(values), dtype))
    return to_numpy(y).astype(np.float64), to_numpy(dx).astype(np.float64)


@pytest.mark.parametrize("name", list(MATH_REFERENCES))
def test_elementwise_activations_at_huge_inputs(backend, dtype, name):
    """Finite, correct values and derivatives; an overflow warning in NumPy
    (exp of 1e4) would fail the test (pytest runs with filterwarnings=error)."""
    y, dx = _fwd(REFERENCES[name][0](), backend, BIG, dtype)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx)), name
    ref = np.vectorize(lambda v: MATH_REFERENCES[name](float(v)), otypes=[float, float])
    y_ref, dx_ref = ref(_rounded(BIG, dtype))
    assert_close(y, y_ref, dtype, f"{name} forward at huge inputs")
    assert_close(dx, dx_ref, dtype, f"{name} backward at huge inputs")


def test_sigmoid_saturates_exactly_without_overflow(backend, dtype):
    y, dx = _fwd(tinynet.Sigmoid(), backend, BIG, dtype)
    assert y[0, 0] == 0.0 and y[1, 2] == 1.0 and y[0, 3] == 0.5  # x = -1e4, 1e4, 0
    assert dx[0, 0] == 0.0 and dx[1, 2] == 0.0 and dx[0, 3] == 0.25


def test_gelu_large_inputs_float32(backend):
    x = np.array([[-1e6, -3e3, -12.0, 12.0], [3e3, 1e6, -1e4, 1e4], [0.0, 1.0, -1.0, 2.0]])
    y, dx = _fwd(tinynet.GELU(), backend, x, "float32")
    np.testing.assert_array_equal(y[:2], [[0.0, 0.0, 0.0, 12.0], [3e3, 1e6, 0.0, 1e4]])
    np.testing.assert_array_equal(dx[:2], [[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0]])


def _np_log_softmax(x):
    z = x - np.max(x, axis=-1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


HUGE_LOGITS = np.array(
    [[1e4, -1e4, 0.0, 0.0], [1e4, 1e4, -1e4, 1e4 - 1.0], [-1e4, -1e4, -1e4, -1e4]]
)


def test_softmax_with_huge_logits(backend, dtype):
    layer = tinynet.Softmax()
    y, back = apply(layer, {}, backend.asarray(HUGE_LOGITS, dtype), backend, False, None)
    expected = np.exp(_np_log_softmax(_rounded(HUGE_LOGITS, dtype)))
    assert_close(y, expected, dtype, "softmax at +-1e4")
    np.testing.assert_array_equal(to_numpy(y)[2], 0.25)
    dx = to_numpy(back(backend.asarray(DY, dtype))[0]).astype(np.float64)
    assert np.all(np.isfinite(dx))
    s = expected
    assert_close(dx, s * DY - s * np.sum(s * DY, axis=-1, keepdims=True), dtype, "softmax vjp")


def test_log_softmax_and_softplus_helpers_at_huge_inputs(backend, dtype):
    from tinynet.layers import log_softmax, softplus

    xp = backend.xp
    ls = log_softmax(backend.asarray(HUGE_LOGITS, dtype), xp)
    assert_close(ls, _np_log_softmax(_rounded(HUGE_LOGITS, dtype)), dtype, "log_softmax")
    sp = softplus(backend.asarray(BIG, dtype), xp)
    expected = np.maximum(BIG, 0.0) + np.log1p(np.exp(-np.abs(BIG)))
    assert_close(sp, expected, dtype, "softplus")
