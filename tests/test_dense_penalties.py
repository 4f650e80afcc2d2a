"""The L1/L2 penalties of Dense (weight_l1, weight_l2, bias_l1, bias_l2) on
every backend: Keras's L1L2 semantics (``l1 * sum|P| + l2 * sum P**2`` added
to the loss, not divided by the batch size), their gradient against a float64
NumPy reference and central finite differences, and that ``fit`` uses both."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, assert_fd_close, central_fd, to_numpy

import tinynet as tn

SCCE = "sparse_categorical_crossentropy"
# per layer (Dense, Tanh, Dense, Softmax): {parameter: (l1, l2)}
PENALTIES = [
    {"W": (0.03, 0.05), "b": (0.02, 0.07)},
    {},
    {"W": (0.0, 0.11), "b": (0.013, 0.0)},
    {},
]
NO_PENALTIES = [{"W": (0.0, 0.0), "b": (0.0, 0.0)}, {}, {"W": (0.0, 0.0), "b": (0.0, 0.0)}, {}]


def make_model(dtype: str, penalties=PENALTIES) -> tn.Sequential:
    (w1, b1), (w2, b2) = ((p["W"], p["b"]) for p in penalties if p)
    return tn.Sequential(
        [
            tn.Dense(3, 4, weight_l1=w1[0], weight_l2=w1[1], bias_l1=b1[0], bias_l2=b1[1]),
            tn.Tanh(),
            tn.Dense(4, 3, weight_l1=w2[0], weight_l2=w2[1], bias_l1=b2[0], bias_l2=b2[1]),
            tn.Softmax(),
        ],
        dtype=dtype,
        seed=0,
    )


def known_params(dtype: str) -> list[dict[str, np.ndarray]]:
    """Parameters away from 0 (the kink of |P|), one dict per layer."""
    rng = np.random.default_rng(7)

    def draw(shape):
        return (rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 1.0, shape)).astype(dtype)

    return [{"W": draw((3, 4)), "b": draw((4,))}, {}, {"W": draw((4, 3)), "b": draw((3,))}, {}]


def set_params(model, backend, params) -> None:
    # copies: fit may update the model's arrays in place
    model.params = [
        {k: backend.asarray(v.copy(), model.dtype) for k, v in p.items()} for p in params
    ]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    return rng.normal(size=(8, 3)), rng.integers(0, 3, size=8)


# ------------------------------------------------------------ float64 NumPy reference


def ref_data_loss_and_grads(params, x, y):
    """Mean sparse categorical cross-entropy of Dense-Tanh-Dense-Softmax and
    its gradient, by hand in float64."""
    W1, b1, W2, b2 = (np.asarray(p[k], dtype=np.float64) for p in params for k in p)
    x = np.asarray(x, dtype=np.float64)
    n, rows = len(x), np.arange(len(x))
    h = np.tanh(x @ W1 + b1)
    z = h @ W2 + b2
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    value = -np.mean(np.log(p[rows, y]))
    dz = p.copy()
    dz[rows, y] -= 1.0
    dz /= n
    dh = (dz @ W2.T) * (1.0 - h**2)
    grads = [{"W": x.T @ dh, "b": dh.sum(axis=0)}, {}, {"W": h.T @ dz, "b": dz.sum(axis=0)}, {}]
    return value, grads


def ref_penalty(params, penalties=PENALTIES):
    """Keras's L1L2: ``l1 * sum|P| + l2 * sum P**2``; gradient ``l1 * sign(P) + 2 * l2 * P``."""
    value, grads = 0.0, []
    for p, pen in zip(params, penalties):
        g = {}
        for k, (l1, l2) in pen.items():
            P = np.asarray(p[k], dtype=np.float64)
            value += l1 * np.sum(np.abs(P)) + l2 * np.sum(P**2)
            g[k] = l1 * np.sign(P) + 2.0 * l2 * P
        grads.append(g)
    return value, grads


def ref_loss_and_grads(params, x, y):
    value, grads = ref_data_loss_and_grads(params, x, y)
    pen_value, pen_grads = ref_penalty(params)
    total = [{k: g[k] + pg[k] for k in g} for g, pg in zip(grads, pen_grads)]
    return value + pen_value, total


# ------------------------------------------------------------ tests


@pytest.mark.parametrize("penalty, expected", [("weight_l1", 0.25), ("weight_l2", 12.5)])
def test_keras_docstring_numbers(backend, penalty, expected):
    """Keras's Regularizer docstring: a 5x5 kernel of ones gives 0.25 with
    L1(0.01) and 12.5 with l2=0.5; here the difference of the loss with and
    without the penalty (same parameters, same batch)."""
    strength = {"weight_l1": 0.01, "weight_l2": 0.5}[penalty]
    x, y = np.linspace(-1, 1, 10).reshape(2, 5), np.array([0, 3])
    values = []
    for kwargs in ({}, {penalty: strength}):
        model = tn.Sequential([tn.Dense(5, 5, **kwargs), tn.Softmax()], dtype="float64")
        set_params(model, backend, [{"W": np.ones((5, 5)), "b": np.zeros(5)}])
        value, _ = model.loss_and_grads(x, y, SCCE)
        values.append(float(to_numpy(value)))
    assert values[1] - values[0] == pytest.approx(expected, rel=1e-12)


def test_value_and_gradient_equal_the_reference(backend, dtype, data):
    x, y = data
    params = known_params(dtype)
    model = make_model(dtype)
    set_params(model, backend, params)
    value, grads = model.loss_and_grads(x.astype(dtype), y, SCCE)
    ref_value, ref_grads = ref_loss_and_grads(params, x.astype(dtype), y)
    assert_close(value, ref_value, dtype, "loss + penalty")
    for i, (g, r) in enumerate(zip(grads, ref_grads)):
        for k in r:
            assert_close(g[k], r[k], dtype, f"layer {i} {k}")


def test_penalty_alone_is_keras_l1l2(backend, data):
    """With and without the penalties at the same parameters: the loss
    differs by exactly Keras's L1L2 value, the gradient by its gradient
    (``2 * l2 * P`` for L2, ``l1 * sign(P)`` for L1)."""
    x, y = data
    params = known_params("float64")
    plain = make_model("float64", NO_PENALTIES)
    penalized = make_model("float64")
    results = []
    for model in (plain, penalized):
        set_params(model, backend, params)
        value, grads = model.loss_and_grads(x, y, SCCE)
        results.append((float(to_numpy(value)), [{k: to_numpy(g[k]) for k in g} for g in grads]))
    (v0, g0), (v1, g1) = results
    pen_value, pen_grads = ref_penalty(params)
    assert v1 - v0 == pytest.approx(pen_value, rel=1e-12, abs=1e-13)
    for a, b, r in zip(g0, g1, pen_grads):
        for k in r:
            np.testing.assert_allclose(b[k] - a[k], r[k], rtol=1e-10, atol=1e-13)


def test_gradient_equals_finite_differences_of_the_whole_loss(backend, data):
    """Central differences of the model's own loss + penalty, every parameter."""
    x, y = data
    params = known_params("float64")
    model = make_model("float64")
    set_params(model, backend, params)
    _, grads = model.loss_and_grads(x, y, SCCE)
    for i, layer in enumerate(params):
        for k in layer:

            def loss_at(value, i=i, k=k):
                trial = [dict(p) for p in params]
                trial[i][k] = value
                set_params(model, backend, trial)
                return float(to_numpy(model.loss_and_grads(x, y, SCCE)[0]))

            numeric = central_fd(loss_at, layer[k])
            assert_fd_close(grads[i][k], numeric, f"layer {i} {k}")
            # the reference's own gradient agrees with the differences too
            assert_fd_close(ref_loss_and_grads(params, x, y)[1][i][k], numeric, "reference")


def test_fit_steps_use_loss_and_penalty(backend, dtype, data):
    """Two SGD steps (lr=0.1, two batches of 4, no shuffle) from known
    parameters: each is ``P - lr * (data grad + penalty grad)`` at the
    parameters before it, and the epoch's loss is the mean of the two steps'
    loss + penalty."""
    x, y = data
    x = x.astype(dtype)
    params = known_params(dtype)
    model = make_model(dtype)
    set_params(model, backend, params)
    history = model.fit(
        x,
        y,
        loss=SCCE,
        optimizer=tn.optimizers.SGD(lr=0.1),
        epochs=1,
        batch_size=4,
        shuffle=False,
        verbose=0,
    )
    expected = [{k: np.asarray(v, dtype=np.float64) for k, v in p.items()} for p in params]
    losses = []
    for a in (0, 4):
        value, grads = ref_loss_and_grads(expected, x[a : a + 4], y[a : a + 4])
        losses.append(value)
        expected = [{k: p[k] - 0.1 * g[k] for k in p} for p, g in zip(expected, grads)]
    for i, (got, want) in enumerate(zip(model.params, expected)):
        for k in want:
            assert_close(got[k], want[k], dtype, f"layer {i} {k} after fit")
    assert_close(history.history["loss"][0], np.mean(losses), dtype, "epoch loss")
