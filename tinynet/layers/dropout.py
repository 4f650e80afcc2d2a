"""Dropout with inverted scaling."""

from __future__ import annotations

import math
from typing import Any

from .. import random
from .base import _NO_GRADS, Array, Layer, Params


class Dropout(Layer):
    """Randomly zero inputs during training.

    Args:
        rate: the probability of DROPPING an input (Keras's convention; the
            old ``jax.example_libraries.stax.Dropout`` took the keep rate).
            Kept inputs are scaled by ``1 / (1 - rate)`` so the expected
            output equals the input; at evaluation the layer is the identity.

    The mask is drawn from the step's key with :func:`tinynet.random.bernoulli`,
    so it is bit-identical on every backend and a compiled step stays pure.
    """

    needs_key = True

    def __init__(self, rate: float) -> None:
        if not isinstance(rate, (int, float)) or not math.isfinite(rate) or not 0 <= rate < 1:
            raise ValueError(
                f"Dropout: rate (the probability of dropping) must be in [0, 1), "
                f"received rate={rate!r}"
            )
        self.rate = float(rate)

    def forward(self, params, x, xp, training=False, key=None):
        if not training or self.rate == 0.0:
            return x, lambda dy, need_dx=True: (dy, _NO_GRADS)
        if key is None:
            raise ValueError("Dropout: training=True needs a random key (pass key=...)")
        keep = random.bernoulli(key, 1.0 - self.rate, x.shape)
        # kept inputs scaled by 1 / (1 - rate), dropped ones exactly 0
        mask = xp.astype(keep, x.dtype) * (1.0 / (1.0 - self.rate))
        y = x * mask

        def backward(dy: Array, need_dx: bool = True) -> tuple[Array, Params]:
            return dy * mask, _NO_GRADS

        return y, backward

    def get_config(self) -> dict[str, Any]:
        return {"type": "Dropout", "rate": self.rate}
