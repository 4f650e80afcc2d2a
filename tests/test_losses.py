"""Losses on every backend and dtype: values against numbers stored from real
Keras (``keras_reference.py``) and against float64 NumPy formulas written here,
gradients against hand-derived float64 gradients, central finite differences
and, on JAX, ``jax.grad`` of the same Keras formulas in ``jax.numpy``; plus
``one_hot`` and the input errors (mixed backends, mismatched shapes)."""

from __future__ import annotations

import keras_reference
import numpy as np
import pytest
from helpers import assert_close, assert_fd_close, central_fd, to_numpy

import tinynet
from tinynet import backends, losses

EPS = 1e-7  # Keras's backend.epsilon()
KERAS_RTOL = {"float64": 1e-9, "float32": 1e-5}

# ------------------------------------------------------------ inputs (3 x 4)
# Away from every kink: no probability near the clip bounds, no regression
# error near 0 (MAE) or near +-delta (Huber with delta 1.0 and 0.5).

P_BIN = np.array([[0.1, 0.8, 0.35, 0.6], [0.92, 0.25, 0.5, 0.07], [0.45, 0.66, 0.15, 0.83]])
Y_BIN = np.array([[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.3, 0.0], [0.7, 1.0, 0.0, 1.0]])
LOGITS = np.array([[-1.7, 0.35, 2.2, -0.45], [0.8, -2.6, -0.15, 1.3], [-0.9, 1.85, 0.6, -1.2]])
# rows that do not sum to one (Keras renormalises them)
P_CAT = np.array([[0.2, 0.5, 0.1, 0.4], [0.3, 0.3, 1.2, 0.2], [0.05, 0.25, 0.4, 0.3]])
# soft targets; the middle row sums to 0.8
Y_CAT = np.array([[0.0, 1.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.2], [0.0, 0.0, 0.0, 1.0]])
LABELS = np.array([1, 2, 3])
Y_REG = np.array([[0.5, -1.2, 2.0, 0.3], [1.1, 0.0, -0.7, 0.4], [-2.2, 0.9, 1.5, -0.3]])
D_REG = np.array([[0.3, -1.6, 0.45, -0.2], [2.5, -0.35, 0.12, -0.8], [0.6, -0.05, -1.4, 0.25]])
P_REG = Y_REG + D_REG


# ------------------------------------------------------------ Keras's formulas
# Written once for a module ``m`` (numpy or jax.numpy): the float64 NumPy
# reference and, with jax.numpy, the function ``jax.grad`` differentiates.


def _log_softmax(m, z):
    z = z - m.max(z, axis=-1, keepdims=True)
    return z - m.log(m.sum(m.exp(z), axis=-1, keepdims=True))


def keras_formula(m, kind, kwargs, y_true, y_pred):
    """Keras 3's loss (mean over the last axis, then over the batch)."""
    if kind == "SparseCategoricalCrossentropy":
        y_true = m.eye(y_pred.shape[-1])[y_true]
        kind = "CategoricalCrossentropy"
    if kind == "BinaryCrossentropy":
        if kwargs.get("from_logits"):
            # -(y log sigmoid(x) + (1 - y) log sigmoid(-x)), log sigmoid(x) = -log(1 + e^-x)
            per = y_true * m.logaddexp(0.0, -y_pred) + (1.0 - y_true) * m.logaddexp(0.0, y_pred)
        else:
            p = m.clip(y_pred, EPS, 1.0 - EPS)
            per = -(y_true * m.log(p) + (1.0 - y_true) * m.log(1.0 - p))
        return m.mean(m.mean(per, axis=-1))
    if kind == "CategoricalCrossentropy":
        if kwargs.get("from_logits"):
            log_q = _log_softmax(m, y_pred)
        else:
            log_q = m.log(m.clip(y_pred / m.sum(y_pred, axis=-1, keepdims=True), EPS, 1.0 - EPS))
        return m.mean(-m.sum(y_true * log_q, axis=-1))
    err = y_pred - y_true
    if kind == "MeanSquaredError":
        per = err**2
    elif kind == "MeanAbsoluteError":
        per = m.abs(err)
    elif kind == "Huber":
        d = kwargs.get("delta", 1.0)
        per = m.where(m.abs(err) <= d, 0.5 * err**2, d * m.abs(err) - 0.5 * d**2)
    else:
        raise AssertionError(kind)
    return m.mean(m.mean(per, axis=-1))


# ------------------------------------------------------------ hand-derived gradients


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def grad_reference(kind, kwargs, y_true, y_pred):
    """dL/dy_pred in float64 (inputs inside the clip range)."""
    n_all, n = y_pred.size, y_pred.shape[0]
    if kind == "SparseCategoricalCrossentropy":
        y_true = np.eye(y_pred.shape[-1])[y_true]
        kind = "CategoricalCrossentropy"
    if kind == "BinaryCrossentropy":
        if kwargs.get("from_logits"):
            return (_sigmoid(y_pred) - y_true) / n_all
        return ((1.0 - y_true) / (1.0 - y_pred) - y_true / y_pred) / n_all
    if kind == "CategoricalCrossentropy":
        total = y_true.sum(axis=-1, keepdims=True)
        if kwargs.get("from_logits"):
            e = np.exp(y_pred)
            return (e / e.sum(axis=-1, keepdims=True) * total - y_true) / n
        # L_i = -sum_j t_j (log p_j - log S): dL/dp_k = -t_k / p_k + T / S
        return (total / y_pred.sum(axis=-1, keepdims=True) - y_true / y_pred) / n
    err = y_pred - y_true
    if kind == "MeanSquaredError":
        return 2.0 * err / n_all
    if kind == "MeanAbsoluteError":
        return np.sign(err) / n_all
    if kind == "Huber":
        d = kwargs["delta"]
        return np.clip(err, -d, d) / n_all
    raise AssertionError(kind)


# name -> (class name, kwargs, y_true, y_pred)
LOSSES = {
    "bce": ("BinaryCrossentropy", {"from_logits": False}, Y_BIN, P_BIN),
    "bce_logits": ("BinaryCrossentropy", {"from_logits": True}, Y_BIN, LOGITS),
    "cce": ("CategoricalCrossentropy", {"from_logits": False}, Y_CAT, P_CAT),
    "cce_logits": ("CategoricalCrossentropy", {"from_logits": True}, Y_CAT, LOGITS),
    "scce": ("SparseCategoricalCrossentropy", {"from_logits": False}, LABELS, P_CAT),
    "scce_logits": ("SparseCategoricalCrossentropy", {"from_logits": True}, LABELS, LOGITS),
    "mse": ("MeanSquaredError", {}, Y_REG, P_REG),
    "mae": ("MeanAbsoluteError", {}, Y_REG, P_REG),
    "huber_1.0": ("Huber", {"delta": 1.0}, Y_REG, P_REG),
    "huber_0.5": ("Huber", {"delta": 0.5}, Y_REG, P_REG),
}
NAMES = list(LOSSES)
KERAS_CASES = {case["name"]: case for case in keras_reference.CASES}


# ------------------------------------------------------------ helpers


def make_loss(kind, kwargs):
    return getattr(losses, kind)(**kwargs)


def _is_sparse(kind):
    return kind == "SparseCategoricalCrossentropy"


def _rounded(a, dtype):
    return np.asarray(a, dtype=dtype).astype(np.float64)


def _inputs(backend, kind, y_true, y_pred, dtype):
    """Backend arrays, and the float64 values they hold."""
    if _is_sparse(kind):
        yt_host = np.asarray(y_true, dtype=np.int64)
        yt = backend.asarray(yt_host, "int64")
    else:
        yt_host = _rounded(y_true, dtype)
        yt = backend.asarray(np.asarray(y_true, dtype=np.float64), dtype)
    yp = backend.asarray(np.asarray(y_pred, dtype=np.float64), dtype)
    return yt, yp, yt_host, _rounded(y_pred, dtype)


def _scalar(v) -> float:
    return float(to_numpy(v))


# ------------------------------------------------------------ stored Keras numbers


def test_keras_reference_file_is_complete():
    assert keras_reference.KERAS_VERSION.startswith("3.")
    kinds = {(c["loss"], c["kwargs"].get("from_logits")) for c in keras_reference.CASES}
    for kind in ("BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy"):
        assert (kind, False) in kinds and (kind, True) in kinds
    assert {("MeanSquaredError", None), ("MeanAbsoluteError", None), ("Huber", None)} <= kinds


@pytest.mark.parametrize("name", list(KERAS_CASES))
def test_numpy_formula_reproduces_keras_numbers(name):
    """The float64 formulas of this file are Keras's (checks the reference)."""
    case = KERAS_CASES[name]
    y_true = np.asarray(case["y_true"])
    value = keras_formula(np, case["loss"], case["kwargs"], y_true, np.asarray(case["y_pred"]))
    np.testing.assert_allclose(value, case["float64"], rtol=1e-12)


@pytest.mark.parametrize("name", list(KERAS_CASES))
def test_value_matches_keras(backend, dtype, name):
    case = KERAS_CASES[name]
    loss = make_loss(case["loss"], case["kwargs"])
    yt, yp, _, _ = _inputs(backend, case["loss"], case["y_true"], case["y_pred"], dtype)
    value = loss(yt, yp)
    assert to_numpy(value).dtype == np.dtype(dtype)
    assert tuple(value.shape) == ()
    np.testing.assert_allclose(_scalar(value), case[dtype], rtol=KERAS_RTOL[dtype], err_msg=name)
    grad = to_numpy(loss.grad(yt, yp))
    assert grad.dtype == np.dtype(dtype) and np.all(np.isfinite(grad)), name


@pytest.mark.parametrize("name", list(KERAS_CASES))
def test_keras_case_gradient_matches_jax_grad(jax_backend, name):
    """Also at the clip edges (exactly 0 and 1: zero gradient) and logits of +-1e4."""
    import jax
    import jax.numpy as jnp

    case = KERAS_CASES[name]
    kind = case["loss"]
    yt, yp, _, _ = _inputs(jax_backend, kind, case["y_true"], case["y_pred"], "float64")
    expected = jax.jit(jax.grad(lambda p: keras_formula(jnp, kind, case["kwargs"], yt, p)))(yp)
    grad = make_loss(kind, case["kwargs"]).grad(yt, yp)
    assert_close(grad, np.asarray(expected), "float64", name)


# ------------------------------------------------------------ the reference itself


@pytest.mark.parametrize("name", NAMES)
def test_reference_gradient_matches_reference_fd(name):
    kind, kwargs, y_true, y_pred = LOSSES[name]
    numeric = central_fd(lambda p: float(keras_formula(np, kind, kwargs, y_true, p)), y_pred)
    assert_fd_close(grad_reference(kind, kwargs, y_true, y_pred), numeric, name)


# ------------------------------------------------------------ every loss, every backend


@pytest.mark.parametrize("name", NAMES)
def test_value_and_gradient_match_reference(backend, dtype, name):
    kind, kwargs, y_true, y_pred = LOSSES[name]
    loss = make_loss(kind, kwargs)
    yt, yp, yt64, yp64 = _inputs(backend, kind, y_true, y_pred, dtype)
    value, grad = loss(yt, yp), loss.grad(yt, yp)
    assert to_numpy(value).dtype == np.dtype(dtype) and to_numpy(grad).dtype == np.dtype(dtype)
    assert tuple(grad.shape) == y_pred.shape
    assert_close(value, keras_formula(np, kind, kwargs, yt64, yp64), dtype, f"{name} value")
    assert_close(grad, grad_reference(kind, kwargs, yt64, yp64), dtype, f"{name} grad")
    # the functional form used inside models gives the same pair
    yt_cast = yt if _is_sparse(kind) else backend.xp.astype(yt, yp.dtype)
    v2, g2 = loss.value_and_grad(backend.xp, yt_cast, yp)
    assert_close(v2, _scalar(value), dtype, f"{name} value_and_grad value")
    assert_close(g2, to_numpy(grad), dtype, f"{name} value_and_grad grad")


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_fd_float64(backend, name):
    """``loss.grad`` against central differences of the library's own value."""
    kind, kwargs, y_true, y_pred = LOSSES[name]
    loss = make_loss(kind, kwargs)
    yt, yp, _, _ = _inputs(backend, kind, y_true, y_pred, "float64")

    def f(p):
        return _scalar(loss(yt, backend.asarray(p, "float64")))

    assert_fd_close(loss.grad(yt, yp), central_fd(f, y_pred), name)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_jax_grad(jax_backend, name):
    import jax
    import jax.numpy as jnp

    kind, kwargs, y_true, y_pred = LOSSES[name]
    yt, yp, _, _ = _inputs(jax_backend, kind, y_true, y_pred, "float64")
    oracle = jax.jit(jax.value_and_grad(lambda p: keras_formula(jnp, kind, kwargs, yt, p)))
    value_ref, grad_ref = oracle(yp)
    value, grad = make_loss(kind, kwargs).value_and_grad(jnp, yt, yp)
    assert_close(value, float(value_ref), "float64", f"{name} value")
    assert_close(grad, np.asarray(grad_ref), "float64", f"{name} grad vs jax.grad")


def test_integer_and_float32_targets_are_cast_to_the_prediction_dtype(backend):
    loss = losses.MeanSquaredError()
    yp = backend.asarray(P_REG, "float64")
    for yt in (
        backend.asarray(np.round(Y_REG), "int64"),
        backend.asarray(np.round(Y_REG), "float32"),
    ):
        value = loss(yt, yp)
        assert to_numpy(value).dtype == np.float64
        assert_close(value, np.mean((P_REG - np.round(Y_REG)) ** 2), "float64", "mse int targets")


# ------------------------------------------------------------ clipping and stability


def test_bce_clipped_predictions_have_zero_gradient(backend, dtype):
    """Predictions of exactly 0 and 1 (rows 0 and 1) are clipped to
    [1e-7, 1 - 1e-7] (as rounded to the dtype): finite loss, zero gradient."""
    y_true = np.array([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.5, 0.5], [0.0, 1.0, 0.3, 1.0]])
    y_pred = np.array([[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0], [0.4, 0.7, 0.2, 0.9]])
    loss = losses.BinaryCrossentropy()
    yt, yp, yt64, yp64 = _inputs(backend, "BinaryCrossentropy", y_true, y_pred, dtype)
    value, grad = _scalar(loss(yt, yp)), to_numpy(loss.grad(yt, yp)).astype(np.float64)
    lo, hi = float(np.asarray(EPS, dtype)), float(np.asarray(1.0 - EPS, dtype))
    q = np.minimum(np.maximum(yp64, lo), hi)
    expected = -np.mean(yt64 * np.log(q) + (1.0 - yt64) * np.log(1.0 - q))
    assert_close(value, expected, dtype, "clipped value")
    np.testing.assert_array_equal(grad[:2], 0.0)
    expected_row = grad_reference("BinaryCrossentropy", {}, yt64[2:], yp64[2:]) / 3
    assert_close(grad[2:], expected_row, dtype, "unclipped row")


def test_categorical_clipped_predictions_have_zero_gradient(backend, dtype):
    loss = losses.CategoricalCrossentropy()
    y_true = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.5, 0.0, 0.5]])
    y_pred = np.array([[0.0, 1.0, 0.0, 0.0], [0.2, 0.3, 0.4, 0.1], [0.1, 0.6, 0.2, 0.1]])
    yt, yp, yt64, yp64 = _inputs(backend, "CategoricalCrossentropy", y_true, y_pred, dtype)
    grad = to_numpy(loss.grad(yt, yp)).astype(np.float64)
    np.testing.assert_array_equal(grad[0], 0.0)  # every q of row 0 is clipped
    expected_rows = grad_reference("CategoricalCrossentropy", {}, yt64[1:], yp64[1:]) * 2 / 3
    assert_close(grad[1:], expected_rows, dtype, "unclipped rows")
    lo = float(np.asarray(EPS, dtype))
    expected = (-np.log(lo) - np.log(0.4) - 0.5 * np.log(0.6 * 0.1)) / 3
    assert_close(loss(yt, yp), expected, dtype, "clipped value")


def _stable_sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@pytest.mark.parametrize(
    "kind", ["BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy"]
)
def test_from_logits_at_pm_1e4_is_finite_and_exact(backend, dtype, kind):
    logits = np.array([[1e4, -1e4, 0.0, 3.0], [-1e4, 1e4, 1e4, -1e4], [1e4, 1e4, -1e4, 1e4 - 2.0]])
    labels = np.array([1, 2, 3])
    if kind == "BinaryCrossentropy":
        y_true = t = np.array([[0.0, 1.0, 0.5, 1.0], [0.0, 0.0, 1.0, 0.3], [1.0, 0.0, 1.0, 0.0]])
    elif kind == "SparseCategoricalCrossentropy":
        y_true, t = labels, np.eye(4)[labels]
    else:
        y_true = t = np.eye(4)[labels]
    loss = make_loss(kind, {"from_logits": True})
    yt, yp, _, x64 = _inputs(backend, kind, y_true, logits, dtype)
    value, grad = _scalar(loss(yt, yp)), to_numpy(loss.grad(yt, yp)).astype(np.float64)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    if kind == "BinaryCrossentropy":
        expected = np.mean(np.logaddexp(0.0, x64) - x64 * t)
        expected_grad = (_stable_sigmoid(x64) - t) / t.size
    else:
        log_q = x64 - np.max(x64, axis=-1, keepdims=True)
        log_q = log_q - np.log(np.sum(np.exp(log_q), axis=-1, keepdims=True))
        expected = -np.sum(t * log_q) / 3
        expected_grad = (np.exp(log_q) - t) / 3
    assert expected > 1e3  # the +-1e4 logits really are wrong by ~1e4
    assert_close(value, expected, dtype, f"{kind} value")
    assert_close(grad, expected_grad, dtype, f"{kind} grad")


# ------------------------------------------------------------ one_hot


def test_one_hot_values_and_dtype(backend):
    labels = backend.asarray(np.array([2, 0, 1, 2]), "int64")
    out = tinynet.one_hot(labels, 3)
    assert to_numpy(out).dtype == np.float32
    np.testing.assert_array_equal(to_numpy(out), np.eye(3)[[2, 0, 1, 2]])
    out64 = tinynet.one_hot(labels, 5, dtype="float64")
    assert to_numpy(out64).dtype == np.float64
    np.testing.assert_array_equal(to_numpy(out64), np.eye(5)[[2, 0, 1, 2]])
    assert backends.backend_of(out) is backend


@pytest.mark.parametrize("bad, position", [([0, 3, 1], 1), ([1, 0, -1], 2)])
def test_one_hot_out_of_range_label(backend, bad, position):
    labels = backend.asarray(np.array(bad), "int64")
    with pytest.raises(
        ValueError, match=rf"label {bad[position]} at position {position} .* 3 classes"
    ):
        tinynet.one_hot(labels, 3)


def test_one_hot_rejects_bad_num_classes_and_float_labels(backend):
    labels = backend.asarray(np.array([0, 1]), "int64")
    for bad in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match="num_classes"):
            tinynet.one_hot(labels, bad)
    with pytest.raises(ValueError, match="integers"):
        tinynet.one_hot(backend.asarray(np.array([0.0, 1.0]), "float32"), 2)


# ------------------------------------------------------------ input errors


def _other_backend(backend):
    for name in ("numpy", "strict", "jax"):
        if name != backend.name:
            other, _ = backends.probe(name)
            if other is not None:
                return other
    pytest.skip("needs a second backend")


@pytest.mark.parametrize("name", NAMES)
def test_mixed_backends_raise_type_error_naming_both(backend, name):
    kind, kwargs, y_true, y_pred = LOSSES[name]
    other = _other_backend(backend)
    yt, _, _, _ = _inputs(other, kind, y_true, y_pred, "float64")
    _, yp, _, _ = _inputs(backend, kind, y_true, y_pred, "float64")
    loss = make_loss(kind, kwargs)
    for call in (loss, loss.grad):
        with pytest.raises(TypeError) as info:
            call(yt, yp)
        message = str(info.value)
        assert other.name in message and backend.name in message, message


@pytest.mark.parametrize("name", [n for n in NAMES if not n.startswith("scce")])
def test_shape_mismatch_names_both_shapes(backend, name):
    kind, kwargs, y_true, y_pred = LOSSES[name]
    loss = make_loss(kind, kwargs)
    yt = backend.asarray(y_true[:2], "float64")  # (2, 4)
    yp = backend.asarray(y_pred.T, "float64")  # (4, 3)
    for call in (loss, loss.grad):
        with pytest.raises(ValueError) as info:
            call(yt, yp)
        message = str(info.value)
        assert "(2, 4)" in message and "(4, 3)" in message, message


def test_sparse_errors(backend):
    loss = losses.SparseCategoricalCrossentropy()
    yp = backend.asarray(P_CAT, "float64")  # (3, 4)
    with pytest.raises(ValueError, match=r"2 labels for 3 predictions"):
        loss(backend.asarray(np.array([0, 1]), "int64"), yp)
    with pytest.raises(ValueError, match=r"label 4 at position 2 .*4 classes"):
        loss(backend.asarray(np.array([0, 1, 4]), "int64"), yp)
    with pytest.raises(ValueError, match=r"received shape \(3, 1\)"):
        loss(backend.asarray(np.array([[0], [1], [2]]), "int64"), yp)


def test_one_hot_targets_of_wrong_rank_hint_at_sparse(backend):
    loss = losses.CategoricalCrossentropy()
    with pytest.raises(ValueError, match=r"\(3,\).*\(3, 4\).*SparseCategoricalCrossentropy"):
        loss(backend.asarray(LABELS, "int64"), backend.asarray(P_CAT, "float64"))


def test_huber_rejects_bad_delta():
    for bad in (0, -1.0, "1"):
        with pytest.raises(ValueError, match="delta"):
            losses.Huber(bad)
