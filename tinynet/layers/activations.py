"""Activation layers, each forward next to its backward, in numerically stable
forms: nothing overflows for inputs of +-1e4 in float32."""

from __future__ import annotations

import math
from typing import Any

from .. import arguments
from .base import _NO_GRADS, Array, Layer, Params, identity_backward


def sigmoid(x: Array, xp: Any) -> Array:
    """``1 / (1 + exp(-x))`` without overflow: only ``exp(-|x|)`` is taken."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softmax(x: Array, xp: Any) -> Array:
    """Softmax over the last axis; the row max is subtracted first."""
    e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def log_softmax(x: Array, xp: Any) -> Array:
    z = x - xp.max(x, axis=-1, keepdims=True)
    return z - xp.log(xp.sum(xp.exp(z), axis=-1, keepdims=True))


def softplus(x: Array, xp: Any) -> Array:
    """``log(1 + exp(x))`` as ``max(x, 0) + log1p(exp(-|x|))``."""
    return xp.maximum(x, 0.0) + xp.log1p(xp.exp(-xp.abs(x)))


class Identity(Layer):
    """``y = x``."""

    def forward(self, params, state, x, ops, training=False, key=None):
        return x, state, identity_backward


class Sigmoid(Layer):
    """``y = 1 / (1 + exp(-x))``; ``dy/dx = y (1 - y)``."""

    def forward(self, params, state, x, ops, training=False, key=None):
        y = sigmoid(x, ops.xp)
        return y, state, lambda dy, need_dx=True: (dy * (y * (1.0 - y)), _NO_GRADS)


class Tanh(Layer):
    """``y = tanh(x)``; ``dy/dx = 1 - y**2``."""

    def forward(self, params, state, x, ops, training=False, key=None):
        y = ops.xp.tanh(x)
        return y, state, lambda dy, need_dx=True: (dy * (1.0 - y * y), _NO_GRADS)


class ReLU(Layer):
    """``y = max(x, 0)``; the gradient at 0 is taken as 0."""

    def forward(self, params, state, x, ops, training=False, key=None):
        y = ops.xp.maximum(x, 0.0)
        return y, state, lambda dy, need_dx=True: (ops.relu_grad(dy, x), _NO_GRADS)


class LeakyReLU(Layer):
    """``y = x`` for ``x > 0``, else ``alpha * x`` (Keras's default alpha=0.3)."""

    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = arguments.non_negative("LeakyReLU", "alpha", alpha)

    def forward(self, params, state, x, ops, training=False, key=None):
        xp = ops.xp
        positive = x > 0

        def backward(dy: Array, need_dx: bool = True) -> tuple[Array, Params]:
            return xp.where(positive, dy, self.alpha * dy), _NO_GRADS

        return xp.where(positive, x, self.alpha * x), state, backward


class ELU(Layer):
    """``y = x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``."""

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = arguments.non_negative("ELU", "alpha", alpha)

    def forward(self, params, state, x, ops, training=False, key=None):
        xp = ops.xp
        positive = x > 0
        # expm1 of min(x, 0): no overflow for large positive x (that branch is unused)
        negative_part = self.alpha * xp.expm1(xp.minimum(x, 0.0))

        def backward(dy: Array, need_dx: bool = True) -> tuple[Array, Params]:
            return xp.where(positive, dy, dy * (negative_part + self.alpha)), _NO_GRADS

        return xp.where(positive, x, negative_part), state, backward


class GELU(Layer):
    """GELU, tanh form: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3)))``
    (the array API has no ``erf`` for the exact form)."""

    _C = math.sqrt(2.0 / math.pi)

    def forward(self, params, state, x, ops, training=False, key=None):
        xp = ops.xp
        # tanh is exactly +-1 beyond |x| = 10 in float32 and float64, so the
        # cubic is taken of the clipped input: no overflow for huge |x|.
        xc = xp.clip(x, -10.0, 10.0)
        x2 = xc * xc
        t = xp.tanh(self._C * (xc + 0.044715 * x2 * xc))

        def backward(dy: Array, need_dx: bool = True) -> tuple[Array, Params]:
            dt = (1.0 - t * t) * (self._C * (1.0 + 3 * 0.044715 * x2))
            return dy * (0.5 * (1.0 + t) + 0.5 * x * dt), _NO_GRADS

        return 0.5 * x * (1.0 + t), state, backward


class Softplus(Layer):
    """``y = log(1 + exp(x))``; ``dy/dx = sigmoid(x)``."""

    def forward(self, params, state, x, ops, training=False, key=None):
        y = softplus(x, ops.xp)
        return y, state, lambda dy, need_dx=True: (dy * sigmoid(x, ops.xp), _NO_GRADS)


class Softmax(Layer):
    """Softmax over the last axis.  Followed by a (sparse) categorical
    cross-entropy, the model fuses the pair (see :mod:`tinynet.losses`)."""

    def forward(self, params, state, x, ops, training=False, key=None):
        xp = ops.xp
        y = softmax(x, xp)

        def backward(dy: Array, need_dx: bool = True) -> tuple[Array, Params]:
            return y * (dy - xp.sum(dy * y, axis=-1, keepdims=True)), _NO_GRADS

        return y, state, backward
