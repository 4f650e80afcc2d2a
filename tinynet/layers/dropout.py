"""Dropout with inverted scaling."""

from __future__ import annotations

from .. import arguments, random
from .base import _NO_GRADS, Layer, identity_backward


class Dropout(Layer):
    """Randomly zero inputs during training (a mask drawn from the step's key, the
    same bits on every backend); the identity at evaluation.

    Args:
        rate: the probability of DROPPING an input (Keras's convention, not
            stax's keep rate); kept inputs are scaled by ``1 / (1 - rate)``.
    """

    needs_key = True

    def __init__(self, rate: float) -> None:
        self.rate = arguments.real(
            "Dropout", "rate", rate, "in [0, 1) (the probability of dropping)", lambda v: 0 <= v < 1
        )

    def forward(self, params, state, x, ops, training=False, key=None):
        if not training or self.rate == 0.0:
            return x, state, identity_backward
        if key is None:
            raise ValueError("Dropout: training=True needs a random key (pass key=...)")
        keep = random.bernoulli(key, 1.0 - self.rate, x.shape)
        mask = ops.xp.astype(keep, x.dtype) * (1.0 / (1.0 - self.rate))
        return x * mask, state, lambda dy, need_dx=True: (dy * mask, _NO_GRADS)
