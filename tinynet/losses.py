"""Losses with Keras semantics, each with its hand-written gradient.

``loss(y_true, y_pred)`` is the mean loss (over every element for elementwise
losses), ``loss.grad(y_true, y_pred)`` is ``dL/dy_pred``.  As in Keras,
probabilities are clipped to ``[EPSILON, 1 - EPSILON]`` and categorical
predictions renormalised to sum to 1; the gradients include both (0 where
clipped).  The fused Softmax/Sigmoid head: docs/DESIGN.md, section 3."""

from __future__ import annotations

import math
from typing import Any

from . import arguments, backends
from .layers.activations import log_softmax, sigmoid, softmax
from .validation import check_labels, check_loss_inputs

Array = Any
EPSILON = 1e-7

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "Huber",
    "one_hot",
    "get",
]


def one_hot(labels: Array, num_classes: int, dtype: Any = None) -> Array:
    """``(n,)`` integer labels -> ``(n, num_classes)`` rows of ``dtype`` (default float32);
    labels outside ``[0, num_classes)`` raise ``ValueError`` (unless inside ``jit``)."""
    xp = backends.namespace(labels)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(
            f"one_hot: num_classes must be a positive integer, received {num_classes!r}"
        )
    check_labels(labels, num_classes, "one_hot")
    dtype = backends.backend_of(labels).dtype(dtype or "float32")
    return xp.astype(labels[:, None] == xp.arange(num_classes, dtype=labels.dtype), dtype)


class Loss:
    """Base class.  Subclasses implement :meth:`value_and_grad`."""

    sparse = False  # y_true holds integer labels rather than values like y_pred

    def value_and_grad(self, xp: Any, y_true: Array, y_pred: Array) -> tuple[Array, Array]:
        """``(mean loss, dL/dy_pred)``; ``y_true`` already in ``y_pred``'s dtype."""
        raise NotImplementedError

    def value(self, xp: Any, y_true: Array, y_pred: Array) -> Array:
        return self.value_and_grad(xp, y_true, y_pred)[0]

    def _prepare(self, y_true: Array, y_pred: Array) -> tuple[Any, Array]:
        return backends.namespace(y_true, y_pred), check_loss_inputs(self, y_true, y_pred)

    def __call__(self, y_true: Array, y_pred: Array) -> Array:
        return self.value(*self._prepare(y_true, y_pred), y_pred)

    def grad(self, y_true: Array, y_pred: Array) -> Array:
        return self.value_and_grad(*self._prepare(y_true, y_pred), y_pred)[1]

    def get_config(self) -> dict[str, Any]:
        """``{"type": <class name>, <constructor arguments>}``."""
        return {"type": type(self).__name__, **vars(self)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "type")
        return f"{type(self).__name__}({args})"

    # Equal configs are the same loss: fit(loss="mse") twice must not compile twice.
    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.get_config().items())))


class _Crossentropy(Loss):
    """``from_logits=True``: logits in, stable log-softmax / log-sigmoid forms."""

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = bool(from_logits)


class BinaryCrossentropy(_Crossentropy):
    """``-mean(y log p + (1 - y) log(1 - p))``; targets in [0, 1], any shape."""

    def value_and_grad(self, xp, y_true, y_pred):
        n = math.prod(y_pred.shape)
        if self.from_logits:
            x = y_pred
            # max(x, 0) - x y + log(1 + exp(-|x|)): no overflow for any x
            value = xp.sum(xp.maximum(x, 0.0) - x * y_true + xp.log1p(xp.exp(-xp.abs(x)))) / n
            return value, (sigmoid(x, xp) - y_true) / n
        p = xp.clip(y_pred, EPSILON, 1.0 - EPSILON)
        inside = (y_pred >= EPSILON) & (y_pred <= 1.0 - EPSILON)
        value = -xp.sum(y_true * xp.log(p) + (1.0 - y_true) * xp.log(1.0 - p)) / n
        dp = (1.0 - y_true) / (1.0 - p) - y_true / p
        return value, xp.where(inside, dp, 0.0) / n


class CategoricalCrossentropy(_Crossentropy):
    """``-mean_i sum_j y_ij log p_ij`` for one-hot (or soft) targets ``(n, k)``."""

    def value_and_grad(self, xp, y_true, y_pred):
        n = y_pred.shape[0]
        if self.from_logits:
            value = -xp.sum(y_true * log_softmax(y_pred, xp)) / n
            total = xp.sum(y_true, axis=-1, keepdims=True)
            return value, (softmax(y_pred, xp) * total - y_true) / n
        return _renormalized_ce(xp, y_true, y_pred, n)


class SparseCategoricalCrossentropy(_Crossentropy):
    """Categorical cross-entropy with ``(n,)`` integer labels as targets."""

    sparse = True

    def value_and_grad(self, xp, y_true, y_pred):
        n, k = y_pred.shape
        target = xp.astype(y_true[:, None] == xp.arange(k, dtype=y_true.dtype), y_pred.dtype)
        if not self.from_logits:
            return _renormalized_ce(xp, target, y_pred, n)
        # One pass of softmax serves both: -log p_y = log(sum(exp(z))) - z_y.
        z = y_pred - xp.max(y_pred, axis=-1, keepdims=True)
        e = xp.exp(z)
        total = xp.sum(e, axis=-1, keepdims=True)
        value = (xp.sum(xp.log(total)) - xp.sum(target * z)) / n
        grad = e / total
        grad -= target  # probs - one_hot, in place on the fresh array
        grad *= 1.0 / n
        return value, grad


def _renormalized_ce(xp: Any, target: Array, y_pred: Array, n: int) -> tuple[Array, Array]:
    # Keras: q = clip(p / sum(p), eps, 1 - eps); L = -sum(t log q).
    total = xp.sum(y_pred, axis=-1, keepdims=True)
    q_raw = y_pred / total
    q = xp.clip(q_raw, EPSILON, 1.0 - EPSILON)
    value = -xp.sum(target * xp.log(q)) / n
    inside = (q_raw >= EPSILON) & (q_raw <= 1.0 - EPSILON)
    g = xp.where(inside, -target / q, 0.0)  # dL/dq
    # dq_j/dp_k = delta_jk / S - p_j / S**2
    dp = (g - xp.sum(g * q_raw, axis=-1, keepdims=True)) / total
    return value, dp / n


class MeanSquaredError(Loss):
    """``mean((y_pred - y_true)**2)``."""

    def value_and_grad(self, xp, y_true, y_pred):
        n = math.prod(y_pred.shape)
        diff = y_pred - y_true
        return xp.sum(diff * diff) / n, (2.0 / n) * diff


class MeanAbsoluteError(Loss):
    """``mean(|y_pred - y_true|)``; gradient ``sign(diff)`` (0 at 0)."""

    def value_and_grad(self, xp, y_true, y_pred):
        n = math.prod(y_pred.shape)
        diff = y_pred - y_true
        return xp.sum(xp.abs(diff)) / n, xp.sign(diff) / n


class Huber(Loss):
    """Keras's Huber: ``0.5 e**2`` for ``|e| <= delta``, else ``delta (|e| - 0.5 delta)``."""

    def __init__(self, delta: float = 1.0) -> None:
        self.delta = arguments.positive("Huber", "delta", delta)

    def value_and_grad(self, xp, y_true, y_pred):
        n = math.prod(y_pred.shape)
        e = y_pred - y_true
        a = xp.abs(e)
        small = a <= self.delta
        value = xp.sum(xp.where(small, 0.5 * e * e, self.delta * a - 0.5 * self.delta**2)) / n
        grad = xp.where(small, e, self.delta * xp.sign(e)) / n
        return value, grad


_BY_NAME: dict[str, type[Loss]] = {
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
    "huber": Huber,
}


def get(loss: Any) -> Loss:
    """A loss from an instance, a name (``"sparse_categorical_crossentropy"``) or a config."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss.lower() in _BY_NAME:
        return _BY_NAME[loss.lower()]()
    if isinstance(loss, dict):
        classes = {cls.__name__: cls for cls in _BY_NAME.values()}
        if loss.get("type") in classes:
            return classes[loss["type"]](**{k: v for k, v in loss.items() if k != "type"})
    raise ValueError(
        f"unknown loss {loss!r}; pass a tinynet.losses.Loss or one of: {', '.join(_BY_NAME)}"
    )
