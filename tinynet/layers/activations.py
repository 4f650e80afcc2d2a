"""Activation layers: each forward sits next to its hand-written backward.

All are elementwise except :class:`Softmax` (over the last axis).  The forms
are the numerically stable ones: nothing here overflows for inputs of +-1e4
in float32.
"""

from __future__ import annotations

import math
from typing import Any

import backends

from .base import _NO_GRADS, Array, Layer, Params


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

    def forward(self, params, x, xp, training=False, key=None):
        return x, lambda dy, need_dx=True: (dy, _NO_GRADS)


class Sigmoid(Layer):
    """``y = 1 / (1 + exp(-x))``; ``dy/dx = y (1 - y)``."""

    def forward(self, params, x, xp, training=False, key=None):
        y = sigmoid(x, xp)
        return y, lambda dy, need_dx=True: (dy * (y * (1.0 - y)), _NO_GRADS)


class Tanh(Layer):
    """``y = tanh(x)``; ``dy/dx = 1 - y**2``."""

    def forward(self, params, x, xp, training=False, key=None):
        y = xp.tanh(x)
        return y, lambda dy, need_dx=True: (dy * (1.0 - y * y), _NO_GRADS)


class ReLU(Layer):
    """``y = max(x, 0)``; the gradient at 0 is taken as 0."""

    def forward(self, params, x, xp, training=False, key=None):
        y = xp.maximum(x, 0.0)
        fused = backends.fused(xp, "relu_grad")  # NumPy's one-pass C loop, same bits
        if fused is not None:
            return y, lambda dy, need_dx=True: (fused(dy, x), _NO_GRADS)
        # dy * mask rather than where(): NumPy's where is ~10x slower than a
        # multiply, and this is on every hidden layer of every step.
        return y, lambda dy, need_dx=True: (dy * xp.astype(x > 0, dy.dtype), _NO_GRADS)


class LeakyReLU(Layer):
    """``y = x`` for ``x > 0``, else ``alpha * x`` (Keras's default alpha=0.3)."""

    def __init__(self, alpha: float = 0.3) -> None:
        if not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
            raise ValueError(
                f"LeakyReLU: alpha must be a finite number >= 0, received alpha={alpha!r}"
            )
        self.alpha = float(alpha)

    def forward(self, params, x, xp, training=False, key=None):
        positive = x > 0
        y = xp.where(positive, x, self.alpha * x)
        return y, lambda dy, need_dx=True: (xp.where(positive, dy, self.alpha * dy), _NO_GRADS)

    def get_config(self) -> dict[str, Any]:
        return {"type": "LeakyReLU", "alpha": self.alpha}


class ELU(Layer):
    """``y = x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``."""

    def __init__(self, alpha: float = 1.0) -> None:
        if not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"ELU: alpha must be a finite number >= 0, received alpha={alpha!r}")
        self.alpha = float(alpha)

    def forward(self, params, x, xp, training=False, key=None):
        positive = x > 0
        # expm1 of min(x, 0): no overflow for large positive x (that branch is unused)
        negative_part = self.alpha * xp.expm1(xp.minimum(x, 0.0))
        y = xp.where(positive, x, negative_part)

        def backward(dy: Array, need_dx: bool = True) -> tuple[Array, Params]:
            return xp.where(positive, dy, dy * (negative_part + self.alpha)), _NO_GRADS

        return y, backward

    def get_config(self) -> dict[str, Any]:
        return {"type": "ELU", "alpha": self.alpha}


_GELU_C = math.sqrt(2.0 / math.pi)


class GELU(Layer):
    """GELU, tanh form: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3)))``.

    The array API has no ``erf``, so the exact form is not portable.
    """

    def forward(self, params, x, xp, training=False, key=None):
        # tanh is exactly +-1 beyond |x| = 10 in float32 and float64, so the
        # cubic is taken of the clipped input: no overflow for huge |x|.
        xc = xp.clip(x, -10.0, 10.0)
        x2 = xc * xc
        t = xp.tanh(_GELU_C * (xc + 0.044715 * x2 * xc))
        y = 0.5 * x * (1.0 + t)

        def backward(dy: Array, need_dx: bool = True) -> tuple[Array, Params]:
            dt = (1.0 - t * t) * (_GELU_C * (1.0 + 3 * 0.044715 * x2))
            return dy * (0.5 * (1.0 + t) + 0.5 * x * dt), _NO_GRADS

        return y, backward


class Softplus(Layer):
    """``y = log(1 + exp(x))``; ``dy/dx = sigmoid(x)``."""

    def forward(self, params, x, xp, training=False, key=None):
        y = softplus(x, xp)
        return y, lambda dy, need_dx=True: (dy * sigmoid(x, xp), _NO_GRADS)


class Softmax(Layer):
    """Softmax over the last axis.

    Followed by a (sparse) categorical cross-entropy in a model, the pair is
    fused: the loss is taken from the logits and its gradient is
    ``probs - one_hot`` (see :mod:`tinynet.losses`).
    """

    def forward(self, params, x, xp, training=False, key=None):
        y = softmax(x, xp)

        def backward(dy: Array, need_dx: bool = True) -> tuple[Array, Params]:
            return y * (dy - xp.sum(dy * y, axis=-1, keepdims=True)), _NO_GRADS

        return y, backward
