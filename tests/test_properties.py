"""Property tests of the cross-entropy losses (hypothesis, derandomised).

For any finite float32 logits up to +-1e4: every cross-entropy (binary,
categorical, sparse; from logits, and from probabilities made by softmax /
sigmoid) is >= 0 and finite with a finite gradient; each row of the
softmax-CE gradient sums to 0; adding a constant to all logits leaves the
loss unchanged; sigmoid-BCE from logits equals |x| when the target is the
opposite of a confident logit.

NumPy runs 200 examples per property; JAX and the strict array-API backend
run fewer, with one fixed shape (JAX compiles every op per shape).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import to_numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinynet import losses
from tinynet.layers import sigmoid, softmax

EXAMPLES = {"numpy": 200, "strict": 40, "jax": 40}
FIXED_SHAPE = {"jax": (4, 5), "strict": (3, 4)}
LIMIT = 1e4
EPS32 = float(np.finfo(np.float32).eps)

FINITE = st.floats(-LIMIT, LIMIT, width=32)


def run(backend, test) -> None:
    """Run the hypothesis ``test`` with this backend's example count."""
    settings(derandomize=True, max_examples=EXAMPLES.get(backend.name, 40), deadline=None,
             database=None, suppress_health_check=[HealthCheck.too_slow])(test)()


@st.composite
def logits_and_targets(draw, shape=None, soft=False):
    """``(logits (n, k) float32, labels (n,), targets (n, k) float32)``;
    targets are one-hot rows of the labels, or any values in [0, 1] with ``soft``."""
    n, k = shape or (draw(st.integers(1, 6)), draw(st.integers(2, 6)))
    logits = draw(hnp.arrays(np.float32, (n, k), elements=FINITE))
    labels = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    if soft:
        targets = draw(hnp.arrays(np.float32, (n, k), elements=st.floats(0, 1, width=32)))
    else:
        targets = np.eye(k, dtype=np.float32)[labels]
    return logits, labels, targets


def _value(a) -> float:
    return float(to_numpy(a))


# (loss class, from_logits, targets: "labels" | "one_hot" | "soft")
CROSS_ENTROPIES = {
    "binary-from-logits": (losses.BinaryCrossentropy, True, "soft"),
    "binary-from-sigmoid": (losses.BinaryCrossentropy, False, "soft"),
    "categorical-from-logits": (losses.CategoricalCrossentropy, True, "one_hot"),
    "categorical-from-softmax": (losses.CategoricalCrossentropy, False, "one_hot"),
    "sparse-from-logits": (losses.SparseCategoricalCrossentropy, True, "labels"),
    "sparse-from-softmax": (losses.SparseCategoricalCrossentropy, False, "labels"),
}


def _inputs(backend, name, logits, labels, targets):
    """``(loss, y_true, y_pred)`` on ``backend`` for the cross-entropy ``name``."""
    cls, from_logits, kind = CROSS_ENTROPIES[name]
    xp = backend.xp
    z = backend.asarray(logits)
    if from_logits:
        y_pred = z
    elif cls is losses.BinaryCrossentropy:
        y_pred = sigmoid(z, xp)
    else:
        y_pred = softmax(z, xp)
    y_true = backend.asarray(labels if kind == "labels" else targets)
    return cls(from_logits=from_logits), y_true, y_pred


@pytest.mark.parametrize("name", list(CROSS_ENTROPIES))
def test_cross_entropy_is_nonnegative_and_finite(backend, name):
    soft = CROSS_ENTROPIES[name][2] == "soft"

    @given(logits_and_targets(FIXED_SHAPE.get(backend.name), soft=soft))
    def check(data):
        loss, y_true, y_pred = _inputs(backend, name, *data)
        value = _value(loss(y_true, y_pred))
        assert np.isfinite(value) and value >= 0.0, (name, value)
        grad = to_numpy(loss.grad(y_true, y_pred))
        assert grad.dtype == np.float32 and np.isfinite(grad).all(), (name, grad)

    run(backend, check)


@pytest.mark.parametrize("cls", [losses.CategoricalCrossentropy,
                                 losses.SparseCategoricalCrossentropy])
def test_softmax_ce_gradient_rows_sum_to_zero(backend, cls):
    sparse = cls is losses.SparseCategoricalCrossentropy

    @given(logits_and_targets(FIXED_SHAPE.get(backend.name)))
    def check(data):
        logits, labels, targets = data
        grad = to_numpy(cls(from_logits=True).grad(
            backend.asarray(labels if sparse else targets), backend.asarray(logits)))
        np.testing.assert_allclose(grad.astype(np.float64).sum(axis=1), 0.0, atol=1e-5)
        # and it is not trivially zero: the target entry is negative unless
        # softmax already put (almost) all the mass there
        n = len(labels)
        assert (grad[np.arange(n), labels] <= 0).all()

    run(backend, check)


@pytest.mark.parametrize("name", [n for n in CROSS_ENTROPIES if not n.startswith("binary")])
def test_adding_a_constant_to_all_logits_leaves_the_loss_unchanged(backend, name):
    @given(logits_and_targets(FIXED_SHAPE.get(backend.name)), FINITE)
    def check(data, c):
        logits, labels, targets = data
        shifted = (logits + np.float32(c)).astype(np.float32)
        loss, y_true, y_pred = _inputs(backend, name, logits, labels, targets)
        _, _, y_pred_shifted = _inputs(backend, name, shifted, labels, targets)
        a, b = _value(loss(y_true, y_pred)), _value(loss(y_true, y_pred_shifted))
        # rounding logits + c moves each logit by <= eps * |logit + c| / 2, which moves the
        # loss by at most twice that; the loss itself is good to a few eps relative
        bound = float(np.abs(logits).max()) + abs(c)
        tolerance = 4 * EPS32 * (2 * bound + 1) + 8 * EPS32 * max(abs(a), 1.0)
        assert abs(a - b) <= tolerance, (a, b, c, tolerance)

    run(backend, check)


def test_sigmoid_bce_from_logits_equals_abs_x_for_opposite_targets(backend):
    """``y = 0`` for ``x >= 50``, ``y = 1`` for ``x <= -50``: the loss is |x|
    (no overflow, no log(0)) and the gradient is sign(x) / size; with the
    matching targets the loss is ~0."""
    shape = FIXED_SHAPE.get(backend.name)

    @given(st.integers(1, 8) if shape is None else st.just(shape[0] * shape[1]), st.data())
    def check(size, data):
        magnitude = data.draw(hnp.arrays(np.float32, (size, 1),
                                         elements=st.floats(50, LIMIT, width=32)))
        sign = data.draw(hnp.arrays(np.float32, (size, 1), elements=st.sampled_from([-1.0, 1.0])))
        x = magnitude * sign
        wrong = (x < 0).astype(np.float32)  # 1 where the logit says 0, and vice versa
        loss = losses.BinaryCrossentropy(from_logits=True)
        xb = backend.asarray(x)
        value = _value(loss(backend.asarray(wrong), xb))
        np.testing.assert_allclose(value, np.abs(x.astype(np.float64)).mean(), rtol=2e-6)
        grad = to_numpy(loss.grad(backend.asarray(wrong), xb))
        np.testing.assert_allclose(grad, sign / size, rtol=1e-6)
        right = 1.0 - wrong
        assert 0.0 <= _value(loss(backend.asarray(right), xb)) <= 1e-20

    run(backend, check)
